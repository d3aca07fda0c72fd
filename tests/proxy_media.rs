//! In-process: federation media answers of a fake remote homeserver, downloaded by hs1 through
//! the guard's outbound (proxy protocol) listener.
//!
//! Before each download the remote sends hs1, through the guard's inbound listener, a
//! transaction whose event references the `mxc://remote.test/<id>` (the mxc index: only media
//! an event that crossed towards hs1 references may follow it). The remote answers
//! `/_matrix/federation/v1/media/download/<id>` with:
//! - (a) the strict `multipart/mixed` form with the bytes: a clean PNG is released
//!   byte-identical; the EICAR file and a text marked `GEHEIM` are refused (403, none of their
//!   bytes in the answer);
//! - (b) a `Location` part pointing to `https://127.0.0.1:<port>/file`, a host on
//!   `[media] redirect_hosts`: the guard fetches the file itself and answers inline — no
//!   `Location` header or part reaches hs1, the bytes are identical;
//! - (c) a `Location` to `127.0.0.2`, not on the list: 403, the guard never connects there;
//! - (d) malformed multipart (three parts; a multipart type without a boundary): not 2xx, none
//!   of the file's bytes;
//!
//! and media no crossing event references is refused; thumbnails (`/thumbnail/<id>`) and the
//! legacy `/_matrix/media/v3/download/…` endpoint are inspected alike. With `[media]
//! allow_unscanned = true` a clean multipart answer crosses as it is (the harness itself).
mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::*;
use grenzwacht::config::Config;
use grenzwacht::keys::SigningKey;
use grenzwacht::proxy::{Guard, Listeners};
use grenzwacht::store::Store;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::json;

const HS1: &str = "hs1.test";
const REMOTE: &str = "remote.test";
const ROOM: &str = "!media:remote.test";
const SEND: &str = "/_matrix/federation/v1/send/";
const BOUNDARY: &str = "gwtestboundary0123";
const MULTIPART: &str = "multipart/mixed; boundary=gwtestboundary0123";

/// What the fake remote answers for one media id: (status, content type, body).
type Files = Arc<Mutex<HashMap<String, (u16, &'static str, Vec<u8>)>>>;

fn png() -> Vec<u8> {
    use std::io::Write;
    fn chunk(out: &mut Vec<u8>, ty: &[u8; 4], data: &[u8]) {
        let mut c = flate2::Crc::new();
        c.update(ty);
        c.update(data);
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(ty);
        out.extend_from_slice(data);
        out.extend_from_slice(&c.sum().to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(
        &mut out,
        b"IHDR",
        &[0, 0, 0, 16, 0, 0, 0, 16, 8, 2, 0, 0, 0],
    );
    let raw: Vec<u8> = (0..16u8)
        .flat_map(|y| std::iter::once(0).chain((0..48u8).map(move |x| x.wrapping_mul(y))))
        .collect();
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&raw).unwrap();
    chunk(&mut out, b"IDAT", &z.finish().unwrap());
    chunk(&mut out, b"IEND", b"");
    out
}

fn eicar() -> Vec<u8> {
    let (a, b) = (
        "X5O!P%@AP[4\\PZX54(P^)7CC)7}$",
        "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*",
    );
    format!("{a}{b}").into_bytes()
}

/// The strict federation form: JSON metadata, then the bytes (or headers only).
fn multipart(second_headers: &str, bytes: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "--{BOUNDARY}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--{BOUNDARY}\r\n{second_headers}\r\n\r\n"
    )
    .into_bytes();
    out.extend_from_slice(bytes);
    out.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    out
}

/// The parts of a multipart body (boundary from its first line): (headers, body).
fn parts(mut body: &[u8]) -> Vec<(String, Vec<u8>)> {
    // Synapse's layout (and the guard's) starts with a CRLF before the first delimiter.
    while let Some(rest) = body.strip_prefix(b"\r\n") {
        body = rest;
    }
    let Some(first_end) = body.windows(2).position(|w| w == b"\r\n") else {
        return Vec::new();
    };
    let delim = [&b"\r\n"[..], &body[..first_end]].concat();
    let mut rest = &body[first_end + 2..];
    let mut out = Vec::new();
    while let Some(end) = rest.windows(delim.len()).position(|w| w == &delim[..]) {
        let part = &rest[..end];
        if let Some(h) = part.windows(4).position(|w| w == b"\r\n\r\n") {
            out.push((
                String::from_utf8_lossy(&part[..h]).to_ascii_lowercase(),
                part[h + 4..].to_vec(),
            ));
        } else if let Some(stripped) = part.strip_prefix(b"\r\n") {
            // A part without headers.
            out.push((String::new(), stripped.to_vec()));
        }
        rest = &rest[end + delim.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        rest = rest.strip_prefix(b"\r\n").unwrap_or(rest);
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

struct Setup {
    p: Pki,
    hs1_key: SigningKey,
    remote_key: SigningKey,
    hs1: Recorder,
    remote: Recorder,
    files: Files,
    /// The redirect target (TLS, 127.0.0.1) and what it serves.
    redirect: Recorder,
    redirect_file: Arc<Mutex<Vec<u8>>>,
    /// A listener on 127.0.0.2 that must never be connected to.
    forbidden: std::net::TcpListener,
    proxy: SocketAddr,
    inbound: SocketAddr,
    admin: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    _guard: Arc<Guard>,
}

async fn setup(media: &str) -> Setup {
    let p = pki();
    let hs1_key = SigningKey::generate("hs1").unwrap();
    let keys = key_server_answer(HS1, &hs1_key);
    let hs1 = recorder(
        None,
        Arc::new(move |s: &Seen| {
            if s.path_and_query.starts_with(SEND) {
                (200, "application/json", br#"{"pdus":{}}"#.to_vec())
            } else {
                keys(s)
            }
        }),
    )
    .await;
    let files: Files = Arc::default();
    let f2 = files.clone();
    let remote = recorder(
        Some(acceptor(&p)),
        Arc::new(move |s: &Seen| {
            let path = s.path_and_query.split('?').next().unwrap_or("");
            let id = path.rsplit('/').next().unwrap_or("");
            f2.lock().unwrap().get(id).cloned().unwrap_or((
                404,
                "application/json",
                br#"{"errcode":"M_NOT_FOUND","error":"no"}"#.to_vec(),
            ))
        }),
    )
    .await;
    let redirect_file: Arc<Mutex<Vec<u8>>> = Arc::default();
    let r2 = redirect_file.clone();
    let redirect = recorder(
        Some(acceptor(&p)),
        Arc::new(move |_s: &Seen| (200, "image/png", r2.lock().unwrap().clone())),
    )
    .await;
    let forbidden = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    forbidden.set_nonblocking(true).unwrap();

    let store = p.dir.path().join("gw.db");
    Store::open(&store)
        .unwrap()
        .set_room_version(ROOM, "11", "test")
        .unwrap();
    let toml = format!(
        r#"
[admin]
listen = "127.0.0.1:0"
[inbound]
listen = "127.0.0.1:0"
verify_signatures = false
[[protected]]
server_name = "{HS1}"
cert = "{cert}"
key = "{key}"
upstream = "http://{hs1}"
[outbound]
proxy_listen = "127.0.0.1:0"
allowed_clients = ["127.0.0.0/8"]
proxy_secret = "s3cret"
roots = ["{ca}"]
[[route]]
server_name = "{REMOTE}"
address = "{remote}"
tls_name = "127.0.0.1"
[discovery]
enabled = false
allow_destinations = ["127.0.0.0/8"]
[keys]
verify_pdus = false
[store]
path = "{store}"
[dlp]
policies = "{policies}/policies"
watch_interval_ms = 0
{media}
"#,
        cert = p.cert.display(),
        key = p.key.display(),
        ca = p.ca_path.display(),
        hs1 = hs1.addr,
        remote = remote.addr,
        store = store.display(),
        policies = env!("CARGO_MANIFEST_DIR"),
    );
    let path = p.dir.path().join("guard.toml");
    std::fs::write(&path, toml).unwrap();
    let cfg = Config::load(&path).unwrap_or_else(|e| panic!("config: {e}"));
    let guard = Arc::new(Guard::from_config(&cfg, Store::open(&cfg.store.path).unwrap()).unwrap());
    let listeners = Listeners::bind(&cfg).await.unwrap();
    let local = |l: &Option<tokio::net::TcpListener>| l.as_ref().unwrap().local_addr().unwrap();
    let (proxy, inbound, admin) = (
        local(&listeners.proxy),
        local(&listeners.inbound),
        local(&listeners.admin),
    );
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(grenzwacht::proxy::serve(
        guard.clone(),
        listeners,
        async move {
            let _ = rx.await;
        },
    ));
    Setup {
        p,
        hs1_key,
        remote_key: SigningKey::generate("r1").unwrap(),
        hs1,
        remote,
        files,
        redirect,
        redirect_file,
        forbidden,
        proxy,
        inbound,
        admin,
        stop,
        task,
        _guard: guard,
    }
}

/// A response with its headers (lower-case names).
struct Reply {
    status: u16,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Reply {
    fn errcode(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["errcode"].as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

impl Setup {
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }

    /// A media id whose answer the remote will give.
    fn serve(&self, status: u16, content_type: &'static str, body: Vec<u8>) -> String {
        let id = format!("m{:016x}", rand::random::<u64>());
        self.files
            .lock()
            .unwrap()
            .insert(id.clone(), (status, content_type, body));
        id
    }

    /// The remote sends hs1 (through the guard's inbound listener) an event referencing
    /// `mxc://remote.test/<id>`.
    async fn reference(&self, id: &str) {
        let n = rand::random::<u32>() as u64;
        let pdu = json!({
            "auth_events": [], "prev_events": [], "depth": 5 + (n % 1000),
            "hashes": {"sha256": "x"}, "origin_server_ts": 1_700_000_000_000u64 + n,
            "room_id": ROOM, "sender": "@carol:remote.test", "type": "m.room.message",
            "content": {"msgtype": "m.image", "body": "bild.png", "url": format!("mxc://{REMOTE}/{id}"),
                        "info": {"mimetype": "image/png"}},
            "signatures": {}
        });
        let body = serde_json::to_vec(
            &json!({"origin": REMOTE, "origin_server_ts": 1, "pdus": [pdu], "edus": []}),
        )
        .unwrap();
        let uri = format!("{SEND}r{n}");
        let hdr = auth(&self.remote_key, REMOTE, HS1, "PUT", &uri, Some(&body));
        let got = tls_request(
            self.inbound,
            &self.p.ca_path,
            "PUT",
            &uri,
            &[("authorization", hdr)],
            body,
        )
        .await;
        assert_eq!(
            got.status,
            200,
            "the referencing transaction crosses: {:?}",
            got.json()
        );
        assert!(
            self.hs1
                .seen()
                .iter()
                .any(|s| s.path_and_query == uri && contains(&s.body, id.as_bytes())),
            "hs1 received the event referencing {id}"
        );
    }

    /// hs1 downloads `path` from the remote through the guard's proxy listener.
    async fn download(&self, path: &str) -> Reply {
        let hdr = auth(&self.hs1_key, HS1, REMOTE, "GET", path, None);
        let tcp = tokio::net::TcpStream::connect(self.proxy).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = http::Request::builder()
            .method("GET")
            .uri(format!("matrix-federation://{REMOTE}{path}"))
            .header("host", REMOTE)
            .header("authorization", hdr)
            .header("proxy-authorization", "Bearer s3cret")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Asserts `got` carries exactly `file` inline and no `Location`.
    fn released(&self, got: &Reply, file: &[u8], what: &str) {
        assert_eq!(
            got.status,
            200,
            "{what}: {:?}",
            String::from_utf8_lossy(&got.body[..got.body.len().min(300)])
        );
        assert!(
            got.headers.get(http::header::LOCATION).is_none(),
            "{what}: no Location header"
        );
        let ct = got
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if ct.starts_with("multipart/") {
            let ps = parts(&got.body);
            assert_eq!(ps.len(), 2, "{what}: metadata and file parts");
            assert!(
                ps.iter().all(|(h, _)| !h.contains("location:")),
                "{what}: no Location part: {:?}",
                ps.iter().map(|p| &p.0).collect::<Vec<_>>()
            );
            assert!(ps[1].1 == file, "{what}: the file part is byte-identical");
        } else {
            assert!(got.body[..] == file[..], "{what}: byte-identical");
        }
    }

    fn refused(&self, got: &Reply, file: &[u8], what: &str) {
        assert_eq!(
            (got.status, got.errcode().as_str()),
            (403, "M_FORBIDDEN"),
            "{what}: {:?}",
            String::from_utf8_lossy(&got.body[..got.body.len().min(300)])
        );
        assert!(
            !contains(&got.body, &file[..file.len().min(32)]),
            "{what}: none of the file's bytes in the refusal"
        );
    }
}

fn download_path(id: &str) -> String {
    format!("/_matrix/federation/v1/media/download/{id}")
}

#[tokio::test]
async fn multipart_answers_are_released_only_when_clean() {
    let s = setup("[media]\nredirect_hosts = [\"127.0.0.1\"]\n").await;
    let png = png();
    let clean = s.serve(200, MULTIPART, multipart("Content-Type: image/png", &png));
    s.reference(&clean).await;
    let got = s.download(&download_path(&clean)).await;
    s.released(&got, &png, "(a) clean PNG");
    // The answer is rebuilt: the sender's boundary and the spelling of its metadata never
    // cross (a boundary or whitespace chosen by the sender could carry bits).
    let ct = got.headers[http::header::CONTENT_TYPE].to_str().unwrap();
    assert!(!ct.contains(BOUNDARY), "{ct}");
    assert!(!contains(&got.body, BOUNDARY.as_bytes()));
    let mut spaced = format!(
        "--{BOUNDARY}\r\nContent-Type: application/json\r\n\r\n{{ \"b\" :1,  \"a\":\"\\u0078\"}}\r\n--{BOUNDARY}\r\ncontent-type: image/png\r\n\r\n"
    )
    .into_bytes();
    spaced.extend_from_slice(&png);
    spaced.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    let id = s.serve(200, MULTIPART, spaced);
    s.reference(&id).await;
    let got = s.download(&download_path(&id)).await;
    s.released(&got, &png, "(a) PNG with spaced metadata");
    let ps = parts(&got.body);
    assert_eq!(ps[0].1, br#"{"a":"x","b":1}"#, "metadata re-serialised");
    assert_eq!(ps[1].0, "content-type: image/png");

    for (what, file) in [
        ("(a) EICAR", eicar()),
        (
            "(a) text marked GEHEIM",
            b"Vermerk\nEinstufung: GEHEIM\n".to_vec(),
        ),
    ] {
        let id = s.serve(200, MULTIPART, multipart("Content-Type: text/plain", &file));
        s.reference(&id).await;
        let got = s.download(&download_path(&id)).await;
        s.refused(&got, &file, what);
    }

    // Media no crossing event references: refused, clean as it is.
    let unref = s.serve(200, MULTIPART, multipart("Content-Type: image/png", &png));
    let got = s.download(&download_path(&unref)).await;
    s.refused(&got, &png, "unreferenced PNG");
    s.stop().await;
}

#[tokio::test]
async fn redirects_are_followed_only_to_allowed_hosts_and_answered_inline() {
    let s = setup("[media]\nredirect_hosts = [\"127.0.0.1\"]\n").await;
    let png = png();
    *s.redirect_file.lock().unwrap() = png.clone();

    // (b) an allowed host: fetched by the guard, answered inline.
    let loc = format!("https://127.0.0.1:{}/file", s.redirect.addr.port());
    let id = s.serve(200, MULTIPART, multipart(&format!("Location: {loc}"), b""));
    s.reference(&id).await;
    let got = s.download(&download_path(&id)).await;
    s.released(&got, &png, "(b) redirect to an allowed host");
    assert!(
        !contains(&got.body, loc.as_bytes()),
        "(b) the redirect target is not passed on"
    );
    assert_eq!(
        s.redirect.seen().len(),
        1,
        "(b) the guard fetched the redirect target once"
    );

    // (c) a host not on the list: refused, never contacted.
    let port = s.forbidden.local_addr().unwrap().port();
    let id = s.serve(
        200,
        MULTIPART,
        multipart(&format!("Location: https://127.0.0.2:{port}/file"), b""),
    );
    s.reference(&id).await;
    let got = s.download(&download_path(&id)).await;
    assert_eq!(
        (got.status, got.errcode().as_str()),
        (403, "M_FORBIDDEN"),
        "(c) redirect to a host not allowed"
    );
    assert!(got.headers.get(http::header::LOCATION).is_none());
    assert!(
        matches!(s.forbidden.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "(c) the guard connected to a host not on redirect_hosts"
    );
    s.stop().await;
}

#[tokio::test]
async fn malformed_multipart_answers_never_cross() {
    let s = setup("").await;
    let png = png();
    // Three parts.
    let mut three = multipart("Content-Type: image/png", &png);
    three.truncate(three.len() - format!("--{BOUNDARY}--\r\n").len());
    three.extend_from_slice(
        format!("--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nextra\r\n--{BOUNDARY}--\r\n")
            .as_bytes(),
    );
    // A multipart type without a boundary parameter.
    let no_boundary = multipart("Content-Type: image/png", &png);
    for (what, ct, body) in [
        ("(d) three parts", MULTIPART, three),
        ("(d) no boundary", "multipart/mixed", no_boundary),
    ] {
        let id = s.serve(200, ct, body);
        s.reference(&id).await;
        let got = s.download(&download_path(&id)).await;
        assert!(
            !(200..300).contains(&got.status),
            "{what}: must not cross, got {}",
            got.status
        );
        assert!(
            !contains(&got.body, &png[..32]),
            "{what}: none of the file's bytes"
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn thumbnails_and_legacy_downloads_are_inspected_too() {
    let s = setup("").await;
    let png = png();
    let thumb = |id: &str| {
        format!("/_matrix/federation/v1/media/thumbnail/{id}?width=32&height=32&method=scale")
    };
    let legacy = |id: &str| format!("/_matrix/media/v3/download/{REMOTE}/{id}");

    let id = s.serve(200, MULTIPART, multipart("Content-Type: image/png", &png));
    s.reference(&id).await;
    let got = s.download(&thumb(&id)).await;
    s.released(&got, &png, "clean thumbnail");
    let id = s.serve(
        200,
        MULTIPART,
        multipart("Content-Type: text/plain", &eicar()),
    );
    s.reference(&id).await;
    let got = s.download(&thumb(&id)).await;
    s.refused(&got, &eicar(), "EICAR as a thumbnail");

    // The legacy endpoint answers the bytes themselves.
    let id = s.serve(200, "image/png", png.clone());
    s.reference(&id).await;
    let got = s.download(&legacy(&id)).await;
    s.released(&got, &png, "legacy download, clean");
    let id = s.serve(200, "text/plain", eicar());
    s.reference(&id).await;
    let got = s.download(&legacy(&id)).await;
    s.refused(&got, &eicar(), "legacy download, EICAR");
    s.stop().await;
}

/// The text that travels with a clean file is judged too: a served name carrying a marker
/// (plain or percent-encoded as RFC 8187 `filename*`) and metadata carrying one behind a JSON
/// escape are refused; the same file under a clean name crosses.
#[tokio::test]
async fn names_and_metadata_that_travel_with_a_file_are_judged() {
    let s = setup("").await;
    let png = png();
    let named = |disposition: &str| {
        multipart(
            &format!("Content-Type: image/png\r\nContent-Disposition: {disposition}"),
            &png,
        )
    };
    let id = s.serve(200, MULTIPART, named("inline; filename=karte.png"));
    s.reference(&id).await;
    let got = s.download(&download_path(&id)).await;
    s.released(&got, &png, "clean served name");
    for (what, disposition) in [
        ("marked served name", "inline; filename=\"GEHEIM.png\""),
        (
            "percent-encoded marked name",
            "inline; filename*=UTF-8''%47%45%48%45%49%4D.png",
        ),
    ] {
        let id = s.serve(200, MULTIPART, named(disposition));
        s.reference(&id).await;
        let got = s.download(&download_path(&id)).await;
        s.refused(&got, &png, what);
    }
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Type: application/json\r\n\r\n{{\"note\":\"\\u0047EHEIM\"}}\r\n--{BOUNDARY}\r\nContent-Type: image/png\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&png);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    let id = s.serve(200, MULTIPART, body);
    s.reference(&id).await;
    let got = s.download(&download_path(&id)).await;
    s.refused(&got, &png, "metadata with an escaped marker");
    s.stop().await;
}

/// The harness itself: with the unsafe switch a clean multipart answer crosses as it is.
#[tokio::test]
async fn with_allow_unscanned_a_multipart_answer_crosses_unchanged() {
    let s = setup("[media]\nallow_unscanned = true\n").await;
    let png = png();
    let body = multipart("Content-Type: image/png", &png);
    let id = s.serve(200, MULTIPART, body.clone());
    s.reference(&id).await;
    let got = s.download(&download_path(&id)).await;
    assert_eq!(got.status, 200);
    assert!(got.body[..] == body[..], "the answer crosses unchanged");
    let ps = parts(&got.body);
    assert_eq!(ps.len(), 2);
    assert!(ps[1].1 == png);
    assert_eq!(s.remote.seen().len(), 1);
    let m = metrics(s.admin).await;
    assert!(m.contains("grenzwacht_"), "metrics answer");
    s.stop().await;
}
