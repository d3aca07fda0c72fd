//! The keeper against a real HTTP VZD on 127.0.0.1:0 and lists signed by a throwaway
//! brainpoolP256r1 PKI ([`crate::ti::testpki`]), verified by [`crate::ti::jws::verify_list`];
//! the clock is injected (no sleeping through 72 h).
use std::sync::Mutex;

use super::testserver::TestServer;
use super::*;
use crate::ti::testpki::TestPki;

const DAY: Duration = Duration::from_secs(86_400);
const H72: Duration = Duration::from_secs(72 * 3600);
const TOKEN: &str = "vzd-token-0123456789abcdef";

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

struct Fixture {
    pki: TestPki,
    dir: tempfile::TempDir,
    now: Arc<Mutex<SystemTime>>,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            pki: TestPki::generate(t0() - 400 * DAY, t0() + 400 * DAY),
            dir: tempfile::tempdir().unwrap(),
            now: Arc::new(Mutex::new(t0())),
        }
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn set_now(&self, t: SystemTime) {
        *self.now.lock().unwrap() = t;
    }

    fn vzd_config(&self, url: &str) -> TiConfig {
        let token = self.dir.path().join("vzd.token");
        std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
        TiConfig {
            vzd_url: Some(url.into()),
            vzd_token_file: Some(token),
            state_dir: self.state_dir(),
            ..TiConfig::default()
        }
    }

    fn keeper(&self, cfg: &TiConfig) -> ListKeeper {
        let anchors = self.pki.anchors();
        let verify: Verifier = Box::new(move |jws, at| {
            crate::ti::jws::verify_list(jws, &anchors, at).map_err(|e| e.to_string())
        });
        let now = self.now.clone();
        ListKeeper::with_verifier(cfg, verify, Arc::new(move || *now.lock().unwrap())).unwrap()
    }

    fn list(&self, version: u64, domains: &[&str]) -> String {
        let d: Vec<(&str, bool)> = domains.iter().map(|d| (*d, false)).collect();
        self.pki.sign_list(&TestPki::payload(version, &d))
    }
}

fn version(k: &ListKeeper) -> Option<u64> {
    k.current().map(|l| l.version)
}

/// One payload character changed: the signature no longer matches.
fn tampered(jws: &str) -> String {
    let parts: Vec<&str> = jws.split('.').collect();
    let mut payload = parts[1].as_bytes().to_vec();
    let i = payload.len() / 2;
    payload[i] = if payload[i] == b'A' { b'B' } else { b'A' };
    format!(
        "{}.{}.{}",
        parts[0],
        String::from_utf8(payload).unwrap(),
        parts[2]
    )
}

#[tokio::test]
async fn vzd_200_then_204_sends_version_and_token() {
    let f = Fixture::new();
    let vzd = TestServer::start().await;
    vzd.set(200, f.list(5, &["a.example.de"]));
    let k = f.keeper(&f.vzd_config(&vzd.url("/fl/federationList.jws?x=1")));
    assert_eq!(version(&k), None, "no list before the first fetch");
    assert_eq!(
        k.refresh().await.unwrap(),
        FetchOutcome::Installed { version: 5 }
    );
    assert_eq!(version(&k), Some(5));
    assert!(k.check("A.example.de:8448").await.is_ok());

    vzd.set(204, "");
    f.set_now(t0() + Duration::from_secs(10 * 3600));
    assert_eq!(
        k.refresh().await.unwrap(),
        FetchOutcome::Unchanged { version: 5 }
    );
    let seen = vzd.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].path, "/fl/federationList.jws?x=1");
    assert_eq!(seen[1].path, "/fl/federationList.jws?x=1&version=5");
    for s in &seen {
        assert_eq!(
            s.authorization.as_deref(),
            Some(format!("Bearer {TOKEN}").as_str())
        );
    }
    let st = k.status();
    assert_eq!(st.version, Some(5));
    assert_eq!(st.age_secs, Some(0), "a 204 counts as a verification now");
    assert_eq!(
        st.last_verified.as_deref(),
        Some(rfc3339(t0() + Duration::from_secs(10 * 3600)).as_str())
    );
    assert!(!st.stale);
    assert_eq!(st.source, "vzd");
    assert_eq!(st.last_error, None);
}

#[tokio::test]
async fn a_204_without_a_list_is_no_list() {
    let f = Fixture::new();
    let vzd = TestServer::start().await;
    vzd.set(204, "");
    let k = f.keeper(&f.vzd_config(&vzd.url("/fl.jws")));
    assert!(matches!(k.refresh().await, Err(FetchError::Invalid(_))));
    assert_eq!(version(&k), None);
    assert_eq!(k.check("a.example.de").await, Err(TiDenial::ListStale));
}

#[tokio::test]
async fn a_tampered_list_or_an_error_keeps_the_old_list() {
    let f = Fixture::new();
    let vzd = TestServer::start().await;
    let good = f.list(5, &["a.example.de"]);
    vzd.set(200, good.clone());
    let k = f.keeper(&f.vzd_config(&vzd.url("/fl.jws")));
    k.refresh().await.unwrap();

    vzd.set(200, tampered(&f.list(6, &["a.example.de", "evil.example"])));
    assert!(matches!(k.refresh().await, Err(FetchError::Invalid(_))));
    assert_eq!(version(&k), Some(5));
    assert!(k.status().last_error.is_some());

    // Signed by another PKI: refused.
    let other = TestPki::generate(t0() - DAY, t0() + DAY);
    vzd.set(
        200,
        other.sign_list(&TestPki::payload(7, &[("evil.example", false)])),
    );
    assert!(matches!(k.refresh().await, Err(FetchError::Invalid(_))));
    assert_eq!(version(&k), Some(5));

    for status in [500, 404, 304] {
        vzd.set(status, good.clone());
        assert!(matches!(k.refresh().await, Err(FetchError::Source(_))));
        assert_eq!(version(&k), Some(5));
    }
    // The saved list is still version 5.
    let again = f.keeper(&f.vzd_config(&vzd.url("/fl.jws")));
    assert_eq!(version(&again), Some(5));
}

#[tokio::test]
async fn a_lower_version_is_refused_an_equal_one_refreshes() {
    let f = Fixture::new();
    let vzd = TestServer::start().await;
    vzd.set(200, f.list(5, &["a.example.de", "b.example.de"]));
    let k = f.keeper(&f.vzd_config(&vzd.url("/fl.jws")));
    k.refresh().await.unwrap();

    vzd.set(
        200,
        f.list(4, &["a.example.de", "b.example.de", "old.example"]),
    );
    let e = k.refresh().await.unwrap_err();
    assert!(matches!(e, FetchError::Invalid(_)), "{e}");
    assert_eq!(version(&k), Some(5));
    assert!(k.current().unwrap().lookup("old.example").is_none());

    f.set_now(t0() + Duration::from_secs(3600));
    vzd.set(200, f.list(5, &["a.example.de"]));
    assert_eq!(
        k.refresh().await.unwrap(),
        FetchOutcome::Installed { version: 5 }
    );
    assert_eq!(k.status().age_secs, Some(0));
    assert!(k.current().unwrap().lookup("b.example.de").is_none());
}

#[tokio::test]
async fn older_than_72_hours_blocks_until_a_fetch_succeeds() {
    let f = Fixture::new();
    let vzd = TestServer::start().await;
    vzd.set(200, f.list(5, &["a.example.de"]));
    let k = f.keeper(&f.vzd_config(&vzd.url("/fl.jws")));
    k.refresh().await.unwrap();

    f.set_now(t0() + H72 - Duration::from_secs(1));
    assert!(k.check("a.example.de").await.is_ok());
    f.set_now(t0() + H72 + Duration::from_secs(1));
    assert_eq!(k.current(), None);
    assert_eq!(k.check("a.example.de").await, Err(TiDenial::ListStale));
    let st = k.status();
    assert!(st.stale);
    assert_eq!(st.version, Some(5), "the held list is kept, only not used");
    assert_eq!(st.age_secs, Some(H72.as_secs() + 1));

    // A failing VZD does not help.
    vzd.set(503, "");
    assert!(k.refresh().await.is_err());
    assert_eq!(k.check("a.example.de").await, Err(TiDenial::ListStale));

    // A 204 for the held version is a successful verification.
    vzd.set(204, "");
    k.refresh().await.unwrap();
    assert!(k.check("a.example.de").await.is_ok());

    // And again 72 h later, with a new list.
    f.set_now(t0() + H72 + H72 + Duration::from_secs(2));
    assert_eq!(k.current(), None);
    vzd.set(200, f.list(6, &["a.example.de"]));
    k.refresh().await.unwrap();
    assert_eq!(version(&k), Some(6));
}

#[tokio::test]
async fn a_restart_keeps_version_and_age() {
    let f = Fixture::new();
    let vzd = TestServer::start().await;
    vzd.set(200, f.list(7, &["a.example.de"]));
    let cfg = f.vzd_config(&vzd.url("/fl.jws"));
    {
        let k = f.keeper(&cfg);
        k.refresh().await.unwrap();
    }
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(f.state_dir().join(STATE_FILE_NAME)).unwrap())
            .unwrap();
    assert_eq!(state["version"], 7);
    assert_eq!(state["source"], "vzd");
    assert_eq!(state["last_verified_at"], rfc3339(t0()));

    f.set_now(t0() + Duration::from_secs(5 * 3600));
    let k = f.keeper(&cfg);
    assert_eq!(vzd.count(), 1, "loading makes no request");
    let st = k.status();
    assert_eq!(st.version, Some(7));
    assert_eq!(st.age_secs, Some(5 * 3600));
    assert!(k.check("a.example.de").await.is_ok());

    // Restarted after the age limit: the list is held but stale.
    f.set_now(t0() + H72 + Duration::from_secs(1));
    let k = f.keeper(&cfg);
    assert_eq!(k.status().version, Some(7));
    assert!(k.status().stale);
    assert_eq!(k.current(), None);
}

#[tokio::test]
async fn a_corrupt_saved_state_starts_without_a_list() {
    let f = Fixture::new();
    let vzd = TestServer::start().await;
    vzd.set(200, f.list(7, &["a.example.de"]));
    let cfg = f.vzd_config(&vzd.url("/fl.jws"));
    f.keeper(&cfg).refresh().await.unwrap();
    let list_path = f.state_dir().join(LIST_FILE_NAME);
    let state_path = f.state_dir().join(STATE_FILE_NAME);

    // The saved JWS changed (also: a validly signed other list).
    let original = std::fs::read(&list_path).unwrap();
    std::fs::write(&list_path, f.list(8, &["a.example.de"])).unwrap();
    let k = f.keeper(&cfg);
    assert_eq!(k.status().version, None);
    assert!(k.status().last_error.unwrap().contains("does not match"));
    std::fs::write(&list_path, &original).unwrap();
    assert_eq!(f.keeper(&cfg).status().version, Some(7));

    // A state file that is not JSON.
    std::fs::write(&state_path, "{ not json").unwrap();
    let k = f.keeper(&cfg);
    assert_eq!(k.status().version, None);
    assert_eq!(k.check("a.example.de").await, Err(TiDenial::ListStale));
    // The next fetch repairs it.
    k.refresh().await.unwrap();
    assert_eq!(f.keeper(&cfg).status().version, Some(7));

    // The saved list no longer verifies (restart after the signer expired).
    f.set_now(t0() + 401 * DAY);
    assert_eq!(f.keeper(&cfg).status().version, None);
}

#[tokio::test]
async fn concurrent_misses_share_one_rate_limited_fetch() {
    let f = Fixture::new();
    let vzd = TestServer::start().await;
    let mut cfg = f.vzd_config(&vzd.url("/fl.jws"));
    cfg.miss_refetch_secs = 60;
    vzd.set(200, f.list(1, &["a.example.de"]));
    let k = Arc::new(f.keeper(&cfg));
    k.refresh().await.unwrap();
    assert_eq!(vzd.count(), 1);

    // b is added in version 2; eight servers ask for it at once.
    vzd.set(200, f.list(2, &["a.example.de", "b.example.de"]));
    vzd.set_delay(Duration::from_millis(300));
    let checks = (0..8).map(|_| {
        let k = k.clone();
        tokio::spawn(async move { k.check("b.example.de").await })
    });
    for r in futures_util::future::join_all(checks).await {
        assert!(r.unwrap().is_ok());
    }
    assert_eq!(vzd.count(), 2, "eight concurrent misses, one fetch");
    assert_eq!(version(&k), Some(2));

    // Another unknown domain within 60 s: refused without a fetch.
    vzd.set_delay(Duration::ZERO);
    vzd.set(
        200,
        f.list(3, &["a.example.de", "b.example.de", "c.example.de"]),
    );
    f.set_now(t0() + Duration::from_secs(59));
    assert_eq!(
        k.check("c.example.de").await,
        Err(TiDenial::NotListed {
            domain: "c.example.de".into()
        })
    );
    assert_eq!(vzd.count(), 2);
    // After 60 s a miss fetches again.
    f.set_now(t0() + Duration::from_secs(61));
    assert!(k.check("C.Example.DE").await.is_ok());
    assert_eq!(vzd.count(), 3);
    // A domain that stays unknown: one fetch, then refused.
    f.set_now(t0() + Duration::from_secs(200));
    assert_eq!(
        k.check("d.example.de:8448").await,
        Err(TiDenial::NotListed {
            domain: "d.example.de".into()
        })
    );
    assert_eq!(vzd.count(), 4);
}

#[tokio::test]
async fn without_a_rate_limit_concurrent_misses_still_share_one_fetch() {
    let f = Fixture::new();
    let vzd = TestServer::start().await;
    let mut cfg = f.vzd_config(&vzd.url("/fl.jws"));
    cfg.miss_refetch_secs = 0;
    vzd.set(200, f.list(1, &["a.example.de"]));
    let k = Arc::new(f.keeper(&cfg));
    k.refresh().await.unwrap();
    vzd.set(200, f.list(2, &["a.example.de"]));
    vzd.set_delay(Duration::from_millis(300));
    let checks = (0..8).map(|_| {
        let k = k.clone();
        tokio::spawn(async move { k.check("b.example.de").await })
    });
    for r in futures_util::future::join_all(checks).await {
        assert!(matches!(r.unwrap(), Err(TiDenial::NotListed { .. })));
    }
    assert_eq!(vzd.count(), 2, "eight concurrent misses, one fetch");
    // Without a rate limit the next miss fetches again.
    assert!(k.check("b.example.de").await.is_err());
    assert_eq!(vzd.count(), 3);
}

#[tokio::test]
async fn a_file_source_is_as_fresh_as_its_mtime() {
    let f = Fixture::new();
    let file = f.dir.path().join("federation-list.jws");
    std::fs::write(&file, f.list(3, &["a.example.de"])).unwrap();
    let touch = |t: SystemTime| {
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(t)
            .unwrap()
    };
    touch(t0() - Duration::from_secs(3600));
    let cfg = TiConfig {
        list_file: Some(file.clone()),
        state_dir: f.state_dir(),
        ..TiConfig::default()
    };
    let k = f.keeper(&cfg);
    assert_eq!(
        k.refresh().await.unwrap(),
        FetchOutcome::Installed { version: 3 }
    );
    let st = k.status();
    assert_eq!(st.source, "file");
    assert_eq!(
        st.age_secs,
        Some(3600),
        "the age counts from the file's mtime"
    );

    // Nobody keeps the file current: stale 72 h after its mtime, even when read again.
    f.set_now(t0() + H72);
    k.refresh().await.unwrap();
    assert_eq!(k.current(), None);
    touch(t0() + H72);
    k.refresh().await.unwrap();
    assert_eq!(version(&k), Some(3));

    // A tampered file is refused, the held list stays.
    std::fs::write(&file, tampered(&f.list(4, &["a.example.de", "x.example"]))).unwrap();
    assert!(matches!(k.refresh().await, Err(FetchError::Invalid(_))));
    assert_eq!(version(&k), Some(3));
    std::fs::remove_file(&file).unwrap();
    assert!(matches!(k.refresh().await, Err(FetchError::Source(_))));
    assert_eq!(version(&k), Some(3));
}

#[tokio::test]
async fn run_fetches_at_start_and_stops_on_shutdown() {
    let f = Fixture::new();
    let vzd = TestServer::start().await;
    vzd.set(200, f.list(9, &["a.example.de"]));
    let k = Arc::new(f.keeper(&f.vzd_config(&vzd.url("/fl.jws"))));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(k.clone().run(async {
        let _ = stopped.await;
    }));
    for _ in 0..100 {
        if version(&k).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(version(&k), Some(9));
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("run ends on shutdown")
        .unwrap();
    assert_eq!(vzd.count(), 1);
}

#[test]
fn retries_back_off_within_the_interval() {
    let f = Fixture::new();
    let mut cfg = f.vzd_config("http://127.0.0.1:1/fl.jws");
    cfg.refresh_interval_secs = 3600;
    let k = f.keeper(&cfg);
    let secs = |n| k.next_delay(n).as_secs();
    assert_eq!(
        [secs(0), secs(1), secs(2), secs(3), secs(5), secs(40)],
        [3600, 60, 120, 240, 900, 900]
    );
    cfg.refresh_interval_secs = 90;
    let k = f.keeper(&cfg);
    assert_eq!(k.next_delay(2).as_secs(), 90);
}

#[test]
fn setup_errors() {
    let f = Fixture::new();
    let verify = || -> Verifier { Box::new(|_, _| Err("unused".into())) };
    let clock: Clock = Arc::new(SystemTime::now);
    let mut cfg = f.vzd_config("http://vzd.example/fl.jws");
    assert!(ListKeeper::with_verifier(&cfg, verify(), clock.clone()).is_err());
    cfg.vzd_url = Some("https://vzd.example/fl.jws".into());
    assert!(ListKeeper::with_verifier(&cfg, verify(), clock.clone()).is_ok());
    cfg.vzd_token_file = Some(f.dir.path().join("missing.token"));
    assert!(ListKeeper::with_verifier(&cfg, verify(), clock.clone()).is_err());
    cfg.vzd_token_file = None;
    cfg.list_file = Some(f.dir.path().join("l.jws"));
    assert!(ListKeeper::with_verifier(&cfg, verify(), clock.clone()).is_err());
}

#[test]
fn rfc3339_formatting() {
    assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    assert_eq!(
        rfc3339(UNIX_EPOCH + Duration::from_secs(1_800_000_000)),
        "2027-01-15T08:00:00Z"
    );
    assert_eq!(
        rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
        "2000-02-29T00:00:00Z"
    );
}

#[tokio::test]
async fn new_loads_the_anchors_and_verifies_with_them() {
    let now = SystemTime::now();
    let pki = TestPki::generate(now - DAY, now + DAY);
    let dir = tempfile::tempdir().unwrap();
    let files = pki.write_files(dir.path()).unwrap();
    let list_file = dir.path().join("list.jws");
    std::fs::write(
        &list_file,
        pki.sign_list(&TestPki::payload(11, &[("a.example.de", true)])),
    )
    .unwrap();
    let cfg = TiConfig {
        tsl_roots: files.tsl_roots.clone(),
        intermediates: vec![files.intermediate.clone()],
        list_file: Some(list_file.clone()),
        state_dir: dir.path().join("state"),
        ..TiConfig::default()
    };
    let k = ListKeeper::new(&cfg).unwrap();
    assert_eq!(
        k.refresh().await.unwrap(),
        FetchOutcome::Installed { version: 11 }
    );
    assert!(k.check("a.example.de").await.unwrap().is_insurance);
    // A restart with the real verifier keeps it.
    assert_eq!(version(&ListKeeper::new(&cfg).unwrap()), Some(11));
    // A list signed by another PKI does not verify against these anchors.
    let other = TestPki::generate(now - DAY, now + DAY);
    std::fs::write(
        &list_file,
        other.sign_list(&TestPki::payload(12, &[("evil.example", false)])),
    )
    .unwrap();
    assert!(matches!(k.refresh().await, Err(FetchError::Invalid(_))));
    // Anchors that cannot be read stop the start.
    let bad = TiConfig {
        tsl_roots: dir.path().join("missing.json"),
        ..cfg
    };
    assert!(ListKeeper::new(&bad).is_err());
}

#[tokio::test]
async fn gematiks_signed_list_over_the_vzd() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ti-messenger");
    let anchors = crate::ti::pki::TrustAnchors::load(
        &fixtures.join("tsl_roots_test.json"),
        &[fixtures.join("GEM.KOMP-CA50-TEST-ONLY.der")],
    )
    .unwrap();
    let jws = std::fs::read(fixtures.join("federation-list-v956.jws")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let vzd = TestServer::start().await;
    vzd.set(200, jws);
    let cfg = TiConfig {
        vzd_url: Some(vzd.url("/tim-provider-services/FederationList/federationList.jws")),
        state_dir: dir.path().to_path_buf(),
        ..TiConfig::default()
    };
    // Inside the signer's validity (2023-01-25 to 2028-01-24).
    let at = UNIX_EPOCH + Duration::from_secs(1_780_000_000);
    let verify: Verifier = Box::new(move |jws, at| {
        crate::ti::jws::verify_list(jws, &anchors, at).map_err(|e| e.to_string())
    });
    let k = ListKeeper::with_verifier(&cfg, verify, Arc::new(move || at)).unwrap();
    assert_eq!(
        k.refresh().await.unwrap(),
        FetchOutcome::Installed { version: 956 }
    );
    let list = k.current().unwrap();
    // 175 entries, some domains twice.
    assert!(list.len() > 170, "{}", list.len());
    for d in list.domains() {
        assert!(k.check(&d.to_ascii_uppercase()).await.is_ok(), "{d}");
    }
    assert_eq!(vzd.count(), 1, "listed domains need no refetch");
    vzd.set(204, "");
    assert_eq!(
        k.refresh().await.unwrap(),
        FetchOutcome::Unchanged { version: 956 }
    );
    assert!(vzd.seen()[1]
        .path
        .ends_with("federationList.jws?version=956"));
}
