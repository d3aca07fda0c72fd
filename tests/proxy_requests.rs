//! In-process proxy behaviour for text in requests and for media: a real guard between real
//! sockets, a recording upstream (see `tests/proxy.rs` for the harness).
//!
//! - Outbound directory, profile and public-rooms requests whose alias, user id or search term
//!   carries a marking are refused (403) and never reach the remote; clean ones pass. So are
//!   requests to a server whose name carries one. Judged by
//!   the shipped DLP rule set and, separately, by a config `[[rule]]`.
//! - Media downloads and thumbnails are refused in both directions by default and pass with
//!   `[media] allow_unscanned = true`.
mod common;

use common::*;
use grenzwacht::federation::xmatrix;
use grenzwacht::keys::SigningKey;

const HS1: &str = "hs1.test";
const REMOTE: &str = "remote.test";
const GEHEIM_RULE: &str =
    "[[rule]]\nid = \"geheim\"\nkeywords = [\"GEHEIM\"]\naction = \"redact\"\n";

fn shipped_dlp() -> String {
    format!(
        "[dlp]\npolicies = \"{}/policies\"\nwatch_interval_ms = 0\n",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn outbound_toml(p: &Pki, remote: std::net::SocketAddr, extra: &str) -> String {
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
allowed_clients = ["127.0.0.0/8"]
proxy_secret = "s3cret"
roots = ["{ca}"]
[[route]]
server_name = "{REMOTE}"
address = "{remote}"
tls_name = "127.0.0.1"
[discovery]
enabled = false
{extra}
"#,
        cert = p.cert.display(),
        key = p.key.display(),
        ca = p.ca_path.display(),
    )
}

/// One outbound request as hs1 would send it through Synapse's proxy protocol.
async fn outbound(
    g: &RunningGuard,
    key: &SigningKey,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Got {
    outbound_to(g, key, REMOTE, method, path, body).await
}

/// [`outbound`] to the server `dest`.
async fn outbound_to(
    g: &RunningGuard,
    key: &SigningKey,
    dest: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Got {
    let raw: Option<Box<serde_json::value::RawValue>> =
        body.map(|b| serde_json::from_slice(b).unwrap());
    let hdr = xmatrix::sign_request(key, HS1, dest, method, path, raw.as_deref()).unwrap();
    let headers = vec![
        ("authorization", hdr),
        ("proxy-authorization", "Bearer s3cret".to_string()),
        ("content-type", "application/json".to_string()),
    ];
    plain_request(
        g.proxy.unwrap(),
        method,
        &format!("matrix-federation://{dest}{path}"),
        &headers,
        body.unwrap_or_default().to_vec(),
    )
    .await
}

/// Refusals with `reason` so far (all guards of this test binary share one recorder).
async fn refusals(g: &RunningGuard, direction: &str, reason: &str) -> f64 {
    counter(
        &metrics(g.admin).await,
        "grenzwacht_refusals_total",
        &[("direction", direction), ("reason", reason)],
    )
}

#[tokio::test]
async fn marked_alias_profile_and_search_lookups_never_reach_the_remote() {
    let p = pki();
    for (layer, extra) in [("dlp", shipped_dlp()), ("config", GEHEIM_RULE.to_string())] {
        let remote = recorder(Some(acceptor(&p)), default_answer()).await;
        let key = SigningKey::generate("hs1").unwrap();
        // hs1's listener serves its keys: the guard verifies outbound requests first.
        let hs1 = recorder(None, key_server_answer(HS1, &key)).await;
        let g = start_guard(
            &p,
            &outbound_toml(&p, remote.addr, &extra)
                .replace("http://127.0.0.1:9", &format!("http://{}", hs1.addr)),
        )
        .await;
        let before = refusals(&g, "outbound", "request_text").await;
        let search = br#"{"limit":20,"filter":{"generic_search_term":"Lage GEHEIM"},"include_all_networks":false}"#;
        let marked: [(&str, &str, Option<&[u8]>); 5] = [
            ("GET", "/_matrix/federation/v1/query/directory?room_alias=%23GEHEIM%3Ahs2", None),
            ("GET", "/_matrix/federation/v1/query/directory?room_alias=%23Akte+GEHEIM%3Ahs2", None),
            ("GET", "/_matrix/federation/v1/query/profile?user_id=%40GEHEIM-carol%3Aremote.test", None),
            ("GET", "/_matrix/federation/v1/query/profile?user_id=%40carol%3Aremote.test&field=displayname&user_id=%40GEHEIM%3Aremote.test", None),
            ("POST", "/_matrix/federation/v1/publicRooms", Some(search)),
        ];
        for (method, path, body) in marked {
            let got = outbound(&g, &key, method, path, body).await;
            assert_eq!(
                (got.status, got.errcode().as_str()),
                (403, "M_FORBIDDEN"),
                "{layer}: {method} {path}: {:?}",
                got.json()
            );
            assert!(
                !String::from_utf8_lossy(&got.body).contains("GEHEIM"),
                "{layer}: the refusal carries no payload: {:?}",
                got.json()
            );
        }
        assert!(
            remote.seen().is_empty(),
            "{layer}: the remote saw {:?}",
            remote.seen()
        );
        assert!(
            refusals(&g, "outbound", "request_text").await >= before + 5.0,
            "{layer}: refusals counted"
        );

        // Malformed percent-encoding: refused as a bad request, never forwarded.
        let got = outbound(
            &g,
            &key,
            "GET",
            "/_matrix/federation/v1/query/directory?room_alias=%23GEHEIM%FF%3Ahs2",
            None,
        )
        .await;
        assert_eq!(
            (got.status, got.errcode().as_str()),
            (400, "M_INVALID_PARAM"),
            "{layer}"
        );
        assert!(remote.seen().is_empty());

        // Positive controls: the same requests without the marking cross unchanged.
        let clean = br#"{"limit":20,"filter":{"generic_search_term":"Lagebericht"},"include_all_networks":false}"#;
        for (method, path, body) in [
            (
                "GET",
                "/_matrix/federation/v1/query/directory?room_alias=%23lage%3Ahs2",
                None,
            ),
            (
                "GET",
                "/_matrix/federation/v1/query/profile?user_id=%40carol%3Aremote.test",
                None,
            ),
            (
                "POST",
                "/_matrix/federation/v1/publicRooms",
                Some(&clean[..]),
            ),
        ] {
            let got = outbound(&g, &key, method, path, body).await;
            assert_eq!(
                got.status,
                200,
                "{layer}: {method} {path}: {:?}",
                got.json()
            );
        }
        let seen = remote.seen();
        assert_eq!(seen.len(), 3, "{layer}");
        assert_eq!(
            seen[0].path_and_query,
            "/_matrix/federation/v1/query/directory?room_alias=%23lage%3Ahs2"
        );
        assert_eq!(&seen[2].body[..], &clean[..]);
        g.stop().await;
    }
}

/// The name of the server a request goes to is text the protected side chooses (a user asks
/// their homeserver for `#room:GEHEIM.example`): it would cross in DNS queries, TLS SNI, the
/// `Host` header and the X-Matrix destination, so it is judged before anything leaves.
#[tokio::test]
async fn a_marked_destination_server_name_never_leaves() {
    let p = pki();
    for (layer, extra) in [("dlp", shipped_dlp()), ("config", GEHEIM_RULE.to_string())] {
        let remote = recorder(Some(acceptor(&p)), default_answer()).await;
        let key = SigningKey::generate("hs1").unwrap();
        let hs1 = recorder(None, key_server_answer(HS1, &key)).await;
        // A route for the marked name too: without the check the request would get through.
        let routes = format!(
            "[[route]]\nserver_name = \"GEHEIM.remote.test\"\naddress = \"{}\"\ntls_name = \"127.0.0.1\"\n{extra}",
            remote.addr
        );
        let g = start_guard(
            &p,
            &outbound_toml(&p, remote.addr, &routes)
                .replace("http://127.0.0.1:9", &format!("http://{}", hs1.addr)),
        )
        .await;
        let before = refusals(&g, "outbound", "request_text").await;
        let path = "/_matrix/federation/v1/publicRooms";
        let got = outbound_to(&g, &key, "GEHEIM.remote.test", "GET", path, None).await;
        assert_eq!(
            (got.status, got.errcode().as_str()),
            (403, "M_FORBIDDEN"),
            "{layer}: {:?}",
            got.json()
        );
        assert!(
            !String::from_utf8_lossy(&got.body).contains("GEHEIM"),
            "{layer}: the refusal carries no payload"
        );
        assert!(remote.seen().is_empty(), "{layer}: {:?}", remote.seen());
        assert!(refusals(&g, "outbound", "request_text").await >= before + 1.0);
        // Positive control: the same request to a clean name crosses.
        let got = outbound(&g, &key, "GET", path, None).await;
        assert_eq!(got.status, 200, "{layer}: {:?}", got.json());
        assert_eq!(remote.seen().len(), 1, "{layer}");
        g.stop().await;
    }
}

/// Headers are text no layer judges: only the X-Matrix authorization (as the guard read it) and
/// the body's type cross with a request, only the body's type (and `Retry-After`) with an
/// answer, and a JSON body's type loses its parameters.
#[tokio::test]
async fn only_the_headers_federation_needs_cross() {
    let p = pki();
    let answer: Answer = std::sync::Arc::new(|_s: &Seen| {
        (
            200,
            "application/json; note=GEHEIM",
            br#"{"ok":true}"#.to_vec(),
        )
    });
    let remote = recorder(Some(acceptor(&p)), answer).await;
    let key = SigningKey::generate("hs1").unwrap();
    let hs1 = recorder(None, key_server_answer(HS1, &key)).await;
    let g = start_guard(
        &p,
        &outbound_toml(&p, remote.addr, "")
            .replace("http://127.0.0.1:9", &format!("http://{}", hs1.addr)),
    )
    .await;
    let path = "/_matrix/federation/v1/publicRooms";
    let body = br#"{"limit":5}"#;
    let raw: Box<serde_json::value::RawValue> = serde_json::from_slice(body).unwrap();
    let hdr = xmatrix::sign_request(&key, HS1, REMOTE, "POST", path, Some(&*raw)).unwrap();
    let headers = vec![
        // A parameter the X-Matrix scheme does not define: ignored by receivers, so a channel.
        ("authorization", format!("{hdr},note=\"GEHEIM\"")),
        ("proxy-authorization", "Bearer s3cret".to_string()),
        (
            "content-type",
            "application/json; charset=GEHEIM".to_string(),
        ),
        ("x-note", "GEHEIM".to_string()),
        ("user-agent", "Synapse/GEHEIM".to_string()),
    ];
    let got = plain_request(
        g.proxy.unwrap(),
        "POST",
        &format!("matrix-federation://{REMOTE}{path}"),
        &headers,
        body.to_vec(),
    )
    .await;
    assert_eq!(got.status, 200, "{:?}", got.json());
    let seen = remote.seen();
    assert_eq!(seen.len(), 1);
    let names: Vec<&str> = seen[0].headers.keys().map(|k| k.as_str()).collect();
    for h in &names {
        assert!(
            ["authorization", "content-type", "host", "content-length"].contains(h),
            "header {h} crossed: {names:?}"
        );
    }
    assert_eq!(seen[0].headers["authorization"], hdr.as_str());
    assert_eq!(seen[0].headers["content-type"], "application/json");
    // The answer: its type without parameters, nothing else of the upstream's.
    assert_eq!(got.headers["content-type"], "application/json");
    for (k, v) in &got.headers {
        assert!(
            !v.to_str().unwrap_or("").contains("GEHEIM"),
            "answer header {k} carries the marking"
        );
    }
    g.stop().await;
}

#[tokio::test]
async fn inbound_marked_alias_query_is_refused_before_the_homeserver() {
    let p = pki();
    let up = recorder(None, default_answer()).await;
    let g = start_guard(&p, &inbound_toml(&p, up.addr, &shipped_dlp())).await;
    let key = SigningKey::generate("r1").unwrap();
    let get = |uri: &str| {
        let hdr = xmatrix::sign_request(&key, REMOTE, HS1, "GET", uri, None).unwrap();
        let (addr, ca, uri) = (g.inbound.unwrap(), p.ca_path.clone(), uri.to_string());
        async move { tls_request(addr, &ca, "GET", &uri, &[("authorization", hdr)], vec![]).await }
    };
    let got =
        get("/_matrix/federation/v1/query/directory?room_alias=%23VS-VERTRAULICH%3Ahs1.test").await;
    assert_eq!((got.status, got.errcode().as_str()), (403, "M_FORBIDDEN"));
    assert!(up.seen().is_empty());
    let got = get("/_matrix/federation/v1/query/directory?room_alias=%23team%3Ahs1.test").await;
    assert_eq!(got.status, 200);
    assert_eq!(up.seen().len(), 1);
    g.stop().await;
}

#[tokio::test]
async fn media_is_inspected_by_default_in_both_directions_and_crosses_unread_only_by_config() {
    let p = pki();
    let media_paths = [
        "/_matrix/federation/v1/media/download/abcDEF123",
        "/_matrix/federation/v1/media/thumbnail/abcDEF123?width=32&height=32&method=scale",
        "/_matrix/media/v3/download/remote.test/abcDEF123",
        "/_matrix/media/r0/download/remote.test/abcDEF123",
    ];
    let answer: Answer =
        std::sync::Arc::new(|_s: &Seen| (200, "application/octet-stream", b"file bytes".to_vec()));
    for allow in [false, true] {
        let extra = if allow {
            "[media]\nallow_unscanned = true\n"
        } else {
            ""
        };
        // Outbound: hs1 downloads a remote's media.
        let remote = recorder(Some(acceptor(&p)), answer.clone()).await;
        let key = SigningKey::generate("hs1").unwrap();
        let hs1 = recorder(None, key_server_answer(HS1, &key)).await;
        let g = start_guard(
            &p,
            &outbound_toml(&p, remote.addr, extra)
                .replace("http://127.0.0.1:9", &format!("http://{}", hs1.addr)),
        )
        .await;
        let before = refusals(&g, "outbound", "media_refused").await;
        for path in media_paths {
            let got = outbound(&g, &key, "GET", path, None).await;
            if allow {
                assert_eq!(got.status, 200, "{path}: {:?}", got.json());
                assert_eq!(&got.body[..], b"file bytes");
            } else {
                assert_eq!(
                    (got.status, got.errcode().as_str()),
                    (403, "M_FORBIDDEN"),
                    "{path}"
                );
            }
        }
        // Inspected or not, the request goes out: the answer is what is judged.
        assert_eq!(
            remote.seen().len(),
            media_paths.len(),
            "allow_unscanned = {allow}"
        );
        if !allow {
            assert!(
                refusals(&g, "outbound", "media_refused").await
                    >= before + media_paths.len() as f64
            );
        }
        g.stop().await;

        // Inbound: a remote downloads hs1's media.
        let up = recorder(None, answer.clone()).await;
        let g = start_guard(&p, &inbound_toml(&p, up.addr, extra)).await;
        let rkey = SigningKey::generate("r1").unwrap();
        let before = refusals(&g, "inbound", "media_refused").await;
        for uri in [
            "/_matrix/federation/v1/media/download/abcDEF123",
            "/_matrix/federation/v1/media/thumbnail/abcDEF123?width=32&height=32",
        ] {
            let hdr = xmatrix::sign_request(&rkey, REMOTE, HS1, "GET", uri, None).unwrap();
            let got = tls_request(
                g.inbound.unwrap(),
                &p.ca_path,
                "GET",
                uri,
                &[("authorization", hdr)],
                vec![],
            )
            .await;
            let want = if allow { 200 } else { 403 };
            assert_eq!(got.status, want, "{uri} allow_unscanned = {allow}");
        }
        assert_eq!(up.seen().len(), 2);
        if !allow {
            assert!(refusals(&g, "inbound", "media_refused").await >= before + 2.0);
        }
        g.stop().await;
    }
}

/// A transaction refused for the text around its events (a member besides `pdus`/`edus`) gets
/// the same refusal on retry even after the rule set changed; a new transaction id with the
/// same body is judged afresh by the new rule set.
#[tokio::test]
async fn refused_transaction_text_is_replayed_on_retry_after_a_reload() {
    let p = pki();
    let up = recorder(None, default_answer()).await;
    let dir = tempfile::tempdir().unwrap();
    let rules = |word: &str| {
        format!("mode = \"enforce\"\n[[rule]]\nid = \"t.word\"\ndescription = \"test\"\nseverity = \"high\"\naction = \"redact\"\nkeywords = [\"{word}\"]\ncase_sensitive = true\n")
    };
    std::fs::write(dir.path().join("r.toml"), rules("GEHEIM")).unwrap();
    let extra = format!(
        "[dlp]\npolicies = \"{}\"\nwatch_interval_ms = 50\n",
        dir.path().display()
    );
    let g = start_guard(&p, &inbound_toml(&p, up.addr, &extra)).await;
    let key = SigningKey::generate("r1").unwrap();
    let body =
        br#"{"origin":"remote.test","origin_server_ts":1,"pdus":[],"edus":[],"note":"GEHEIM"}"#
            .to_vec();
    let send = |txn: String| {
        let uri = format!("/_matrix/federation/v1/send/{txn}");
        let raw: Box<serde_json::value::RawValue> = serde_json::from_slice(&body).unwrap();
        let hdr = xmatrix::sign_request(&key, REMOTE, HS1, "PUT", &uri, Some(&raw)).unwrap();
        let (addr, ca, body) = (g.inbound.unwrap(), p.ca_path.clone(), body.clone());
        async move { tls_request(addr, &ca, "PUT", &uri, &[("authorization", hdr)], body).await }
    };
    let txn = format!("rt{}", rand::random::<u32>());
    assert_eq!(send(txn.clone()).await.status, 403);
    // The rule set changes: GEHEIM is no longer a keyword.
    let reloads = |m: String| counter(&m, "grenzwacht_policy_reloads_total", &[("result", "ok")]);
    let before = reloads(metrics(g.admin).await);
    std::fs::write(dir.path().join("r.toml"), rules("ANDERES")).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while reloads(metrics(g.admin).await) <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "rule set not reloaded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let retry = send(txn).await;
    assert_eq!(
        (retry.status, retry.errcode().as_str()),
        (403, "M_FORBIDDEN"),
        "a retry gets the first decision"
    );
    assert_eq!(
        send(format!("new{}", rand::random::<u32>())).await.status,
        200,
        "a new transaction is judged by the new rule set"
    );
    assert_eq!(up.seen().len(), 1);
    g.stop().await;
}
