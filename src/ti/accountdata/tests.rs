use std::time::Duration;

use serde_json::json;

use super::*;
use crate::config::ti::{TiHomeserver, TiVariant};
use crate::ti::keeper::testserver::TestServer;
use crate::ti::permissions::DefaultSetting;

const TOKEN: &str = "syt_admin_token_for_tests_0123456789";
const USER: &str = "@user:127.0.0.1:8448";
const PRO: &str = "de.gematik.tim.account.permissionconfig.pro.v1";

fn config(dir: &std::path::Path, admin_url: &str, cache_secs: u64) -> TiConfig {
    let token = dir.join("admin.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    TiConfig {
        permission_cache_secs: cache_secs,
        homeserver: vec![TiHomeserver {
            server_name: "127.0.0.1:8448".into(),
            admin_url: admin_url.into(),
            admin_token_file: token,
            client_listen: None,
            client_upstream: None,
            client_tls_cert: None,
            client_tls_key: None,
        }],
        ..TiConfig::default()
    }
}

fn answer(global: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"account_data": {"global": global, "rooms": {}}})).unwrap()
}

#[tokio::test]
async fn reads_the_config_with_the_token_and_an_encoded_user_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start().await;
    server.set(
        200,
        answer(json!({
            PRO: {"defaultSetting": "block all", "userExceptions": {"@a:b.de": {}}},
            "m.direct": {}
        })),
    );
    let reader = AccountDataReader::new(&config(dir.path(), &server.url(""), 30)).unwrap();
    let got = reader.permission_config(USER).await.unwrap().unwrap();
    assert_eq!(got.default_setting, DefaultSetting::BlockAll);
    assert!(got.user_exceptions.iter().any(|u| u == "@a:b.de"));
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].path,
        "/_synapse/admin/v1/users/%40user%3A127.0.0.1%3A8448/accountdata"
    );
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
}

#[tokio::test]
async fn the_variant_picks_the_account_data_type_and_absent_is_none() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start().await;
    server.set(200, answer(json!({PRO: {"defaultSetting": "block all"}})));
    let mut cfg = config(dir.path(), &server.url("/"), 30);
    cfg.variant = TiVariant::Epa;
    let reader = AccountDataReader::new(&cfg).unwrap();
    assert_eq!(reader.permission_config(USER).await.unwrap(), None);
    cfg.variant = TiVariant::Pro;
    let reader = AccountDataReader::new(&cfg).unwrap();
    assert!(reader.permission_config(USER).await.unwrap().is_some());
}

#[tokio::test]
async fn answers_are_cached_and_errors_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start().await;
    server.set(500, "boom");
    let reader = AccountDataReader::new(&config(dir.path(), &server.url(""), 30)).unwrap();
    assert!(reader.permission_config(USER).await.is_err());
    assert!(reader.permission_config(USER).await.is_err());
    assert_eq!(server.count(), 2, "an error is not cached");
    server.set(200, answer(json!({PRO: {"defaultSetting": "allow all"}})));
    let first = reader.permission_config(USER).await.unwrap();
    server.set(200, answer(json!({PRO: {"defaultSetting": "block all"}})));
    let second = reader.permission_config(USER).await.unwrap();
    assert_eq!(first, second, "the second read is the cached answer");
    assert_eq!(server.count(), 3);
    // Another user is not served from the first user's entry.
    let other = reader
        .permission_config("@other:127.0.0.1:8448")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(other.default_setting, DefaultSetting::BlockAll);
    assert_eq!(server.count(), 4);
}

#[tokio::test]
async fn without_a_cache_every_read_asks() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start().await;
    server.set(200, answer(json!({})));
    let reader = AccountDataReader::new(&config(dir.path(), &server.url(""), 0)).unwrap();
    assert_eq!(reader.permission_config(USER).await.unwrap(), None);
    assert_eq!(reader.permission_config(USER).await.unwrap(), None);
    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start().await;
    let reader = AccountDataReader::new(&config(dir.path(), &server.url(""), 30)).unwrap();
    for (status, body) in [
        (200, b"not json".to_vec()),
        (
            200,
            serde_json::to_vec(&json!({"account_data": {}})).unwrap(),
        ),
        (200, answer(json!({PRO: {"defaultSetting": "sometimes"}}))),
        (403, b"{}".to_vec()),
        (404, b"{}".to_vec()),
    ] {
        server.set(status, body);
        let e = reader.permission_config(USER).await.unwrap_err();
        assert!(matches!(e, AccountDataError::Unreadable(_)), "{e}");
        assert!(!e.to_string().contains(TOKEN));
    }
    // A user of another server, or no user ID: no request at all.
    let before = server.count();
    assert!(reader
        .permission_config("@user:elsewhere.de")
        .await
        .is_err());
    assert!(reader
        .permission_config("user:127.0.0.1:8448")
        .await
        .is_err());
    assert_eq!(server.count(), before);
}

#[tokio::test]
async fn a_slow_admin_api_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start().await;
    server.set(200, answer(json!({})));
    server.set_delay(Duration::from_secs(5));
    let mut reader = AccountDataReader::new(&config(dir.path(), &server.url(""), 30)).unwrap();
    reader.limits.total = Duration::from_millis(300);
    let e = reader.permission_config(USER).await.unwrap_err();
    assert!(e.to_string().contains("no answer within"), "{e}");
}

#[tokio::test]
async fn an_unreachable_admin_api_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on: bind, note, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let reader =
        AccountDataReader::new(&config(dir.path(), &format!("http://127.0.0.1:{port}"), 30))
            .unwrap();
    assert!(reader.permission_config(USER).await.is_err());
}

#[tokio::test]
async fn an_unreadable_token_file_fails_the_lookup_closed_until_it_is_there() {
    // The token may be provisioned after the guard starts: a missing or empty file fails each
    // lookup (nothing is allowed on it), and the lookup works once the file is there.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), "http://127.0.0.1:1", 30);
    cfg.homeserver[0].admin_token_file = dir.path().join("missing.token");
    let reader = AccountDataReader::new(&cfg).expect("no token needed at start");
    let e = reader.permission_config(USER).await.unwrap_err();
    assert!(e.to_string().contains("admin token"), "{e}");
    std::fs::write(dir.path().join("empty.token"), "  \n").unwrap();
    cfg.homeserver[0].admin_token_file = dir.path().join("empty.token");
    let reader = AccountDataReader::new(&cfg).unwrap();
    assert!(reader.permission_config(USER).await.is_err());
}

#[test]
fn the_cache_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let reader = AccountDataReader::new(&config(dir.path(), "http://127.0.0.1:1", 300)).unwrap();
    for i in 0..CACHE_CAPACITY + 5 {
        reader.remember(&format!("@u{i}:127.0.0.1:8448"), None);
    }
    let cache = reader.cache.lock().unwrap();
    assert_eq!(cache.len(), CACHE_CAPACITY);
    assert!(
        !cache.contains_key("@u0:127.0.0.1:8448"),
        "the oldest went first"
    );
    assert!(cache.contains_key(&format!("@u{}:127.0.0.1:8448", CACHE_CAPACITY + 4)));
}

#[test]
fn the_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    let dir = tempfile::tempdir().unwrap();
    let reader = AccountDataReader::new(&config(dir.path(), "http://127.0.0.1:1", 30)).unwrap();
    let f = reader.permission_config(USER);
    send(&f);
}
