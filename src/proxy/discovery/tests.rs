//! Discovery tests. The resolver runs against a fake backend (never real DNS); the real
//! well-known fetcher runs against a local TLS server on 127.0.0.1.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;

// ---- fake backend ------------------------------------------------------------------------

#[derive(Default)]
struct Fake {
    well_known: HashMap<String, Result<WellKnown, BackendError>>,
    srv: HashMap<String, Result<Vec<SrvRecord>, BackendError>>,
    ips: HashMap<String, Vec<IpAddr>>,
    calls: Mutex<Vec<String>>,
}

impl Fake {
    fn wk(mut self, host: &str, server: &str) -> Self {
        self.well_known.insert(
            host.into(),
            Ok(WellKnown {
                server: server.into(),
                max_age: None,
            }),
        );
        self
    }
    fn wk_result(mut self, host: &str, r: Result<WellKnown, BackendError>) -> Self {
        self.well_known.insert(host.into(), r);
        self
    }
    fn srv(mut self, name: &str, records: &[(&str, u16, u16, u16)]) -> Self {
        let records = records
            .iter()
            .map(|(t, port, priority, weight)| SrvRecord {
                target: (*t).into(),
                port: *port,
                priority: *priority,
                weight: *weight,
            })
            .collect();
        self.srv.insert(name.into(), Ok(records));
        self
    }
    fn srv_err(mut self, name: &str) -> Self {
        self.srv
            .insert(name.into(), Err(BackendError::Failed("SERVFAIL".into())));
        self
    }
    fn ip(mut self, host: &str, ips: &[&str]) -> Self {
        self.ips.insert(
            host.into(),
            ips.iter().map(|i| i.parse().unwrap()).collect(),
        );
        self
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
}

impl DiscoveryBackend for Fake {
    fn well_known<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<WellKnown, BackendError>> {
        self.record(format!("well_known {host}"));
        let r = self
            .well_known
            .get(host)
            .cloned()
            .unwrap_or(Err(BackendError::NotFound));
        Box::pin(async move { r })
    }
    fn srv<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<SrvRecord>, BackendError>> {
        self.record(format!("srv {name}"));
        let r = self.srv.get(name).cloned().unwrap_or(Ok(Vec::new()));
        Box::pin(async move { r })
    }
    fn lookup_ip<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, BackendError>> {
        self.record(format!("ip {host}"));
        let r = self.ips.get(host).cloned().ok_or(BackendError::NotFound);
        Box::pin(async move { r })
    }
}

fn resolver(fake: Fake) -> (ServerResolver, Arc<Fake>) {
    resolver_with(fake, &[], true)
}

fn resolver_with(fake: Fake, routes: &[Route], enabled: bool) -> (ServerResolver, Arc<Fake>) {
    let fake = Arc::new(fake);
    // The resolution order is tested without the destination policy (tested on its own).
    let all = DestinationPolicy {
        allow: Vec::new(),
        deny: Vec::new(),
        off: true,
    };
    (
        ServerResolver::new(routes, enabled, fake.clone()).with_destinations(all),
        fake,
    )
}

fn addrs(list: &[&str]) -> Vec<SocketAddr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

fn route(name: &str, addr: &str, tls: Option<&str>) -> Route {
    Route {
        server_name: name.into(),
        address: addr.parse().unwrap(),
        tls_name: tls.map(Into::into),
    }
}

// ---- server names ----------------------------------------------------------------------------

#[test]
fn server_name_grammar() {
    let ok = [
        ("example.org", Host::Name("example.org".into()), None),
        (
            "example.org:8449",
            Host::Name("example.org".into()),
            Some(8449),
        ),
        ("localhost", Host::Name("localhost".into()), None),
        ("1.2.3.4", Host::Ip("1.2.3.4".parse().unwrap()), None),
        ("1.2.3.4:1", Host::Ip("1.2.3.4".parse().unwrap()), Some(1)),
        ("[::1]", Host::Ip("::1".parse().unwrap()), None),
        (
            "[2001:db8::1]:65535",
            Host::Ip("2001:db8::1".parse().unwrap()),
            Some(65535),
        ),
    ];
    for (s, host, port) in ok {
        let n = ServerName::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!((n.host.clone(), n.port), (host, port), "{s}");
        assert_eq!(n.to_string(), s, "round trip");
    }
    for bad in [
        "",
        ":8448",
        "example.org:",
        "example.org:0",
        "example.org:65536",
        "example.org:123456",
        "example.org:8a",
        "::1",
        "[::1",
        "[::1]8448",
        "[not-ip]",
        "exa mple.org",
        "https://example.org",
        "ex_ample.org",
        "user@example.org",
    ] {
        assert!(
            matches!(
                ServerName::parse(bad),
                Err(crate::federation::server_name::ServerNameError { .. })
            ),
            "{bad:?} should be rejected"
        );
    }
    assert!(ServerName::parse(&"a".repeat(256)).is_err());
    assert!(ServerName::parse(&"a".repeat(255)).is_ok());
}

// ---- resolution order ------------------------------------------------------------------------

#[tokio::test]
async fn ipv4_literal_without_and_with_port() {
    let (r, fake) = resolver(Fake::default());
    let t = r.resolve("192.0.2.7").await.unwrap();
    assert_eq!(t.addrs, addrs(&["192.0.2.7:8448"]));
    assert_eq!(t.tls_name, "192.0.2.7");
    assert_eq!(t.host_header, "192.0.2.7");
    assert_eq!(t.via, Via::IpLiteral);
    let t = r.resolve("192.0.2.7:9000").await.unwrap();
    assert_eq!(t.addrs, addrs(&["192.0.2.7:9000"]));
    assert_eq!(t.host_header, "192.0.2.7:9000");
    assert!(fake.calls().is_empty(), "IP literals need no lookups");
}

#[tokio::test]
async fn ipv6_literal_without_and_with_port() {
    let (r, fake) = resolver(Fake::default());
    let t = r.resolve("[2001:db8::7]").await.unwrap();
    assert_eq!(t.addrs, addrs(&["[2001:db8::7]:8448"]));
    assert_eq!(t.tls_name, "2001:db8::7");
    assert_eq!(t.host_header, "[2001:db8::7]");
    let t = r.resolve("[::1]:8449").await.unwrap();
    assert_eq!(t.addrs, addrs(&["[::1]:8449"]));
    assert_eq!(t.tls_name, "::1");
    assert_eq!(t.host_header, "[::1]:8449");
    assert_eq!(t.via, Via::IpLiteral);
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn hostname_with_explicit_port_uses_address_records_only() {
    let fake = Fake::default()
        .ip("hs.example", &["192.0.2.1", "2001:db8::1"])
        // Present but must not be consulted with an explicit port:
        .wk("hs.example", "other.example")
        .srv("_matrix-fed._tcp.hs.example", &[("x.example.", 1, 0, 0)]);
    let (r, fake) = resolver(fake);
    let t = r.resolve("hs.example:8449").await.unwrap();
    assert_eq!(t.addrs, addrs(&["192.0.2.1:8449", "[2001:db8::1]:8449"]));
    assert_eq!(t.tls_name, "hs.example");
    assert_eq!(t.host_header, "hs.example:8449");
    assert_eq!(t.via, Via::ExplicitPort);
    assert_eq!(fake.calls(), ["ip hs.example"]);
}

#[tokio::test]
async fn well_known_delegation_to_ip_literal() {
    let fake = Fake::default()
        .wk("a.example", "192.0.2.9")
        .wk("b.example", "[2001:db8::9]:9001");
    let (r, fake) = resolver(fake);
    let t = r.resolve("a.example").await.unwrap();
    assert_eq!(t.addrs, addrs(&["192.0.2.9:8448"]));
    assert_eq!(
        (t.tls_name.as_str(), t.host_header.as_str()),
        ("192.0.2.9", "192.0.2.9")
    );
    assert_eq!(t.via, Via::WellKnown);
    let t = r.resolve("b.example").await.unwrap();
    assert_eq!(t.addrs, addrs(&["[2001:db8::9]:9001"]));
    assert_eq!(t.tls_name, "2001:db8::9");
    assert_eq!(t.host_header, "[2001:db8::9]:9001");
    assert_eq!(
        fake.calls(),
        ["well_known a.example", "well_known b.example"]
    );
}

#[tokio::test]
async fn well_known_delegation_with_explicit_port() {
    let fake = Fake::default()
        .wk("hs.example", "matrix.example:443")
        .ip("matrix.example", &["192.0.2.20"])
        .srv(
            "_matrix-fed._tcp.matrix.example",
            &[("x.example.", 1, 0, 0)],
        );
    let (r, fake) = resolver(fake);
    let t = r.resolve("hs.example").await.unwrap();
    assert_eq!(t.addrs, addrs(&["192.0.2.20:443"]));
    assert_eq!(t.tls_name, "matrix.example");
    assert_eq!(t.host_header, "matrix.example:443");
    assert_eq!(t.via, Via::WellKnown);
    assert_eq!(fake.calls(), ["well_known hs.example", "ip matrix.example"]);
}

#[tokio::test]
async fn well_known_delegation_then_matrix_fed_srv() {
    let fake = Fake::default()
        .wk("hs.example", "matrix.example")
        .srv(
            "_matrix-fed._tcp.matrix.example",
            &[("fed.example.", 8500, 10, 0)],
        )
        .srv(
            "_matrix._tcp.matrix.example",
            &[("old.example.", 8600, 10, 0)],
        )
        .ip("fed.example", &["192.0.2.30"]);
    let (r, fake) = resolver(fake);
    let t = r.resolve("hs.example").await.unwrap();
    assert_eq!(t.addrs, addrs(&["192.0.2.30:8500"]));
    assert_eq!(t.tls_name, "matrix.example");
    assert_eq!(t.host_header, "matrix.example");
    assert_eq!(t.via, Via::WellKnownSrv);
    assert_eq!(
        fake.calls(),
        [
            "well_known hs.example",
            "srv _matrix-fed._tcp.matrix.example",
            "ip fed.example"
        ]
    );
}

#[tokio::test]
async fn well_known_delegation_then_deprecated_matrix_srv() {
    let fake = Fake::default()
        .wk("hs.example", "matrix.example")
        .srv(
            "_matrix._tcp.matrix.example",
            &[("old.example", 8600, 10, 0)],
        )
        .ip("old.example", &["192.0.2.31"]);
    let (r, fake) = resolver(fake);
    let t = r.resolve("hs.example").await.unwrap();
    assert_eq!(t.addrs, addrs(&["192.0.2.31:8600"]));
    assert_eq!(t.tls_name, "matrix.example");
    assert_eq!(t.host_header, "matrix.example");
    assert_eq!(
        fake.calls(),
        [
            "well_known hs.example",
            "srv _matrix-fed._tcp.matrix.example",
            "srv _matrix._tcp.matrix.example",
            "ip old.example"
        ]
    );
}

#[tokio::test]
async fn well_known_delegation_without_srv_uses_8448() {
    let fake = Fake::default()
        .wk("hs.example", "matrix.example")
        .ip("matrix.example", &["2001:db8::32"]);
    let (r, fake) = resolver(fake);
    let t = r.resolve("hs.example").await.unwrap();
    assert_eq!(t.addrs, addrs(&["[2001:db8::32]:8448"]));
    assert_eq!(t.tls_name, "matrix.example");
    assert_eq!(t.host_header, "matrix.example");
    assert_eq!(t.via, Via::WellKnownDefaultPort);
    assert_eq!(
        fake.calls(),
        [
            "well_known hs.example",
            "srv _matrix-fed._tcp.matrix.example",
            "srv _matrix._tcp.matrix.example",
            "ip matrix.example"
        ]
    );
}

#[tokio::test]
async fn invalid_well_known_falls_back_to_srv_on_the_server_name() {
    for bad in [
        Ok(WellKnown {
            server: "https://matrix.example".into(),
            max_age: None,
        }),
        Err(BackendError::Failed("status 500".into())),
    ] {
        let fake = Fake::default()
            .wk_result("hs.example", bad)
            .srv(
                "_matrix-fed._tcp.hs.example",
                &[("fed.example.", 8500, 0, 0)],
            )
            .ip("fed.example", &["192.0.2.40"]);
        let (r, fake) = resolver(fake);
        let t = r.resolve("hs.example").await.unwrap();
        assert_eq!(t.addrs, addrs(&["192.0.2.40:8500"]));
        assert_eq!(t.tls_name, "hs.example");
        assert_eq!(t.host_header, "hs.example");
        assert_eq!(t.via, Via::Srv);
        assert_eq!(
            fake.calls(),
            [
                "well_known hs.example",
                "srv _matrix-fed._tcp.hs.example",
                "ip fed.example"
            ]
        );
    }
}

#[tokio::test]
async fn matrix_fed_srv_wins_over_deprecated_matrix_srv() {
    let fake = Fake::default()
        .srv(
            "_matrix-fed._tcp.hs.example",
            &[("new.example.", 8500, 0, 0)],
        )
        .srv("_matrix._tcp.hs.example", &[("old.example.", 8600, 0, 0)])
        .ip("new.example", &["192.0.2.50"])
        .ip("old.example", &["192.0.2.51"]);
    let (r, fake) = resolver(fake);
    let t = r.resolve("hs.example").await.unwrap();
    assert_eq!(t.addrs, addrs(&["192.0.2.50:8500"]));
    assert!(!fake.calls().iter().any(|c| c.contains("_matrix._tcp")));
}

#[tokio::test]
async fn deprecated_matrix_srv_used_when_no_matrix_fed() {
    let fake = Fake::default()
        .srv("_matrix._tcp.hs.example", &[("old.example.", 8600, 0, 0)])
        .ip("old.example", &["192.0.2.51"]);
    let (r, _) = resolver(fake);
    let t = r.resolve("hs.example").await.unwrap();
    assert_eq!(t.addrs, addrs(&["192.0.2.51:8600"]));
    assert_eq!(
        (t.tls_name.as_str(), t.host_header.as_str()),
        ("hs.example", "hs.example")
    );
    assert_eq!(t.via, Via::Srv);
}

/// The whole chain with nothing delegated: the backend sees the spec's order.
#[tokio::test]
async fn fallback_to_8448_after_all_steps_in_spec_order() {
    let fake = Fake::default().ip("hs.example", &["192.0.2.60", "2001:db8::60"]);
    let (r, fake) = resolver(fake);
    let t = r.resolve("hs.example").await.unwrap();
    assert_eq!(t.addrs, addrs(&["192.0.2.60:8448", "[2001:db8::60]:8448"]));
    assert_eq!(t.tls_name, "hs.example");
    assert_eq!(t.host_header, "hs.example");
    assert_eq!(t.via, Via::DefaultPort);
    assert_eq!(
        fake.calls(),
        [
            "well_known hs.example",
            "srv _matrix-fed._tcp.hs.example",
            "srv _matrix._tcp.hs.example",
            "ip hs.example"
        ]
    );
}

#[tokio::test]
async fn srv_records_ordered_by_priority_then_weight() {
    let fake = Fake::default()
        .srv(
            "_matrix-fed._tcp.hs.example",
            &[
                ("b.example.", 2, 20, 100),
                ("a.example.", 1, 10, 1),
                ("c.example.", 3, 10, 50),
            ],
        )
        .ip("a.example", &["192.0.2.1"])
        .ip("b.example", &["192.0.2.2"])
        .ip("c.example", &["192.0.2.3"]);
    let (r, _) = resolver(fake);
    let t = r.resolve("hs.example").await.unwrap();
    assert_eq!(
        t.addrs,
        addrs(&["192.0.2.3:3", "192.0.2.1:1", "192.0.2.2:2"])
    );
}

#[tokio::test]
async fn srv_targets_without_addresses_are_skipped() {
    let fake = Fake::default()
        .srv(
            "_matrix-fed._tcp.hs.example",
            &[("gone.example.", 1, 0, 0), ("ok.example.", 2, 1, 0)],
        )
        .ip("ok.example", &["192.0.2.5"]);
    let (r, _) = resolver(fake);
    assert_eq!(
        r.resolve("hs.example").await.unwrap().addrs,
        addrs(&["192.0.2.5:2"])
    );
}

#[tokio::test]
async fn srv_dot_target_means_unavailable() {
    let fake = Fake::default().srv("_matrix-fed._tcp.hs.example", &[(".", 0, 0, 0)]);
    let (r, fake) = resolver(fake);
    assert!(matches!(
        r.resolve("hs.example").await,
        Err(DiscoveryError::SrvUnavailable(n)) if n == "_matrix-fed._tcp.hs.example"
    ));
    assert!(!fake.calls().iter().any(|c| c.starts_with("ip ")));
}

#[tokio::test]
async fn dns_failures_are_errors_not_fallthrough() {
    let (r, fake) = resolver(Fake::default().srv_err("_matrix-fed._tcp.hs.example"));
    assert!(matches!(
        r.resolve("hs.example").await,
        Err(DiscoveryError::Dns { name, .. }) if name == "_matrix-fed._tcp.hs.example"
    ));
    assert!(!fake.calls().iter().any(|c| c.contains("_matrix._tcp")));

    let (r, _) = resolver(Fake::default());
    assert!(matches!(
        r.resolve("nowhere.example").await,
        Err(DiscoveryError::NoAddresses(h)) if h == "nowhere.example"
    ));
}

#[tokio::test]
async fn invalid_server_name_is_rejected_before_any_lookup() {
    let (r, fake) = resolver(Fake::default());
    assert!(matches!(
        r.resolve("bad name").await,
        Err(DiscoveryError::InvalidServerName { .. })
    ));
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn route_table_wins_over_everything() {
    let routes = [
        route("hs.example", "127.0.0.1:9001", None),
        route("hs2.example:8448", "127.0.0.1:9002", Some("cert.example")),
        route("192.0.2.1", "127.0.0.1:9003", None),
        route("[::1]:8448", "127.0.0.1:9004", None),
    ];
    let fake = Fake::default()
        .wk("hs.example", "elsewhere.example:1")
        .ip("hs.example", &["192.0.2.99"])
        .ip("hs2.example", &["192.0.2.98"]);
    let (r, fake) = resolver_with(fake, &routes, true);

    let t = r.resolve("hs.example").await.unwrap();
    assert_eq!(t.addrs, addrs(&["127.0.0.1:9001"]));
    assert_eq!(
        (t.tls_name.as_str(), t.host_header.as_str()),
        ("hs.example", "hs.example")
    );
    assert_eq!(t.via, Via::Route);

    let t = r.resolve("HS2.example:8448").await.unwrap();
    assert_eq!(t.addrs, addrs(&["127.0.0.1:9002"]));
    assert_eq!(t.tls_name, "cert.example");
    assert_eq!(t.host_header, "HS2.example:8448");

    let t = r.resolve("192.0.2.1").await.unwrap();
    assert_eq!(t.addrs, addrs(&["127.0.0.1:9003"]));
    assert_eq!(t.tls_name, "192.0.2.1");

    let t = r.resolve("[::1]:8448").await.unwrap();
    assert_eq!(t.addrs, addrs(&["127.0.0.1:9004"]));
    assert_eq!(t.tls_name, "::1");

    // Exact match only: the same host with another port is not routed.
    let t = r.resolve("hs2.example:8449").await.unwrap();
    assert_eq!(t.via, Via::ExplicitPort);
    assert_eq!(fake.calls(), ["ip hs2.example"]);
    assert!(r.route("hs.example").is_some() && r.route("other.example").is_none());
}

#[tokio::test]
async fn discovery_disabled_only_routes_and_ip_literals() {
    let routes = [route("hs.example", "127.0.0.1:9001", None)];
    let fake = Fake::default()
        .wk("other.example", "x.example")
        .ip("other.example", &["192.0.2.1"]);
    let (r, fake) = resolver_with(fake, &routes, false);
    assert_eq!(r.resolve("hs.example").await.unwrap().via, Via::Route);
    assert_eq!(
        r.resolve("127.0.0.2:8448").await.unwrap().via,
        Via::IpLiteral
    );
    assert_eq!(r.resolve("[::1]").await.unwrap().via, Via::IpLiteral);
    for name in ["other.example", "other.example:8448"] {
        assert!(
            matches!(r.resolve(name).await, Err(DiscoveryError::NoRoute(n)) if n == name),
            "{name}"
        );
    }
    assert!(
        fake.calls().is_empty(),
        "disabled discovery never asks the backend"
    );

    let r = ServerResolver::routes_only(&routes);
    assert!(matches!(
        r.resolve("other.example").await,
        Err(DiscoveryError::NoRoute(_))
    ));
}

#[tokio::test]
async fn from_parts_with_discovery_disabled_builds_no_backend() {
    let routes = [route("hs.example", "127.0.0.1:9001", None)];
    let disabled = DiscoveryConfig {
        enabled: false,
        ..DiscoveryConfig::default()
    };
    let r = ServerResolver::from_parts(&routes, &disabled, test_tls::client_config(None)).unwrap();
    assert_eq!(r.resolve("hs.example").await.unwrap().via, Via::Route);
    assert!(matches!(
        r.resolve("x.example").await,
        Err(DiscoveryError::NoRoute(_))
    ));
}

// ---- well-known cache ------------------------------------------------------------------------

fn count(fake: &Fake, call: &str) -> usize {
    fake.calls().iter().filter(|c| *c == call).count()
}

#[tokio::test]
async fn well_known_cached_24h_by_default() {
    let fake = Fake::default()
        .wk("hs.example", "192.0.2.1")
        .ip("hs.example", &["192.0.2.2"]);
    let (r, fake) = resolver(fake);
    let t0 = Instant::now();
    r.resolve_at("hs.example", t0).await.unwrap();
    r.resolve_at("HS.example", t0 + Duration::from_secs(23 * 3600))
        .await
        .unwrap();
    assert_eq!(count(&fake, "well_known hs.example"), 1);
    let t = r
        .resolve_at("hs.example", t0 + Duration::from_secs(24 * 3600 + 1))
        .await
        .unwrap();
    assert_eq!(t.via, Via::WellKnown);
    assert_eq!(count(&fake, "well_known hs.example"), 2);
}

#[tokio::test]
async fn well_known_max_age_respected_and_capped_at_48h() {
    let with_age = |secs| {
        Ok(WellKnown {
            server: "192.0.2.1".into(),
            max_age: Some(Duration::from_secs(secs)),
        })
    };
    let (r, fake) = resolver(Fake::default().wk_result("short.example", with_age(60)));
    let t0 = Instant::now();
    r.resolve_at("short.example", t0).await.unwrap();
    r.resolve_at("short.example", t0 + Duration::from_secs(59))
        .await
        .unwrap();
    assert_eq!(count(&fake, "well_known short.example"), 1);
    r.resolve_at("short.example", t0 + Duration::from_secs(61))
        .await
        .unwrap();
    assert_eq!(count(&fake, "well_known short.example"), 2);

    let (r, fake) = resolver(Fake::default().wk_result("long.example", with_age(100 * 3600)));
    r.resolve_at("long.example", t0).await.unwrap();
    r.resolve_at("long.example", t0 + Duration::from_secs(47 * 3600))
        .await
        .unwrap();
    assert_eq!(count(&fake, "well_known long.example"), 1);
    r.resolve_at("long.example", t0 + Duration::from_secs(48 * 3600 + 1))
        .await
        .unwrap();
    assert_eq!(count(&fake, "well_known long.example"), 2);
}

#[tokio::test]
async fn well_known_errors_cached_for_an_hour() {
    let (r, fake) = resolver(Fake::default().ip("hs.example", &["192.0.2.2"]));
    let t0 = Instant::now();
    r.resolve_at("hs.example", t0).await.unwrap();
    r.resolve_at("hs.example", t0 + Duration::from_secs(3599))
        .await
        .unwrap();
    assert_eq!(count(&fake, "well_known hs.example"), 1);
    // SRV is not cached by the resolver (hickory caches DNS).
    assert_eq!(count(&fake, "srv _matrix-fed._tcp.hs.example"), 2);
    r.resolve_at("hs.example", t0 + Duration::from_secs(3601))
        .await
        .unwrap();
    assert_eq!(count(&fake, "well_known hs.example"), 2);
}

// ---- the real well-known fetcher against a local TLS server ----------------------------------

mod test_tls {
    use std::convert::Infallible;
    use std::sync::Arc;

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// A client trusting `root` (or nothing).
    pub fn client_config(root: Option<&CertificateDer<'static>>) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        if let Some(r) = root {
            roots.add(r.clone()).unwrap();
        }
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    pub type Handler = Arc<dyn Fn(&str, u16) -> http::Response<Full<Bytes>> + Send + Sync>;

    /// Serve HTTPS on 127.0.0.1:0 with a self-signed certificate for IP 127.0.0.1.
    /// Returns the port and the certificate.
    pub async fn serve(handler: Handler) -> (u16, CertificateDer<'static>) {
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let cert = ck.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let handler = handler.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let resp = handler(req.uri().path(), port);
                        async move { Ok::<_, Infallible>(resp) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        (port, cert)
    }

    pub fn respond(
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> http::Response<Full<Bytes>> {
        let mut b = http::Response::builder().status(status);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Full::new(Bytes::copy_from_slice(body))).unwrap()
    }
}

use test_tls::{respond, Handler};

fn loopback_discovery() -> DiscoveryConfig {
    // Never queried: the well-known host below is an IP literal. The well-known servers of
    // these tests listen on loopback, which the destination policy refuses unless allowed.
    DiscoveryConfig {
        enabled: true,
        nameservers: vec!["127.0.0.1:9".parse().unwrap()],
        allow_destinations: vec!["127.0.0.0/8".parse().unwrap()],
        ..DiscoveryConfig::default()
    }
}

async fn fetch(handler: Handler) -> Result<WellKnown, BackendError> {
    let (port, cert) = test_tls::serve(handler).await;
    let backend = SystemBackend::new(&loopback_discovery(), test_tls::client_config(Some(&cert)))
        .unwrap()
        .with_https_port(port)
        .with_well_known_timeout(Duration::from_secs(5));
    backend.well_known("127.0.0.1").await
}

#[tokio::test]
async fn real_fetch_reads_m_server_and_max_age() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let r = fetch(Arc::new(move |path: &str, _| {
        seen2.lock().unwrap().push(path.to_owned());
        respond(
            200,
            &[
                ("cache-control", "public, max-age=600"),
                ("content-type", "application/json"),
            ],
            br#"{"m.server": "matrix.example:443", "other": 1}"#,
        )
    }))
    .await
    .unwrap();
    assert_eq!(r.server, "matrix.example:443");
    assert_eq!(r.max_age, Some(Duration::from_secs(600)));
    assert_eq!(*seen.lock().unwrap(), ["/.well-known/matrix/server"]);
}

#[tokio::test]
async fn real_fetch_follows_relative_and_absolute_redirects() {
    let r = fetch(Arc::new(|path: &str, port| match path {
        "/.well-known/matrix/server" => respond(302, &[("location", "/moved")], b""),
        "/moved" => {
            let loc = format!("https://127.0.0.1:{port}/final");
            respond(301, &[("location", &loc)], b"")
        }
        "/final" => respond(200, &[], br#"{"m.server": "192.0.2.1:8448"}"#),
        _ => respond(404, &[], b""),
    }))
    .await
    .unwrap();
    assert_eq!(r.server, "192.0.2.1:8448");
    assert_eq!(r.max_age, None);
}

#[tokio::test]
async fn real_fetch_bounds_redirects() {
    let looped = fetch(Arc::new(|path: &str, _| match path {
        "/.well-known/matrix/server" => respond(302, &[("location", "/a")], b""),
        _ => respond(302, &[("location", "/.well-known/matrix/server")], b""),
    }))
    .await;
    assert!(matches!(looped, Err(BackendError::Failed(m)) if m.contains("loop")));

    let chain = fetch(Arc::new(|path: &str, _| {
        let n: u32 = path
            .strip_prefix("/r")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        respond(307, &[("location", &format!("/r{}", n + 1))], b"")
    }))
    .await;
    assert!(matches!(chain, Err(BackendError::Failed(m)) if m.contains("too many")));

    let plain = fetch(Arc::new(|_: &str, _| {
        respond(302, &[("location", "http://127.0.0.1/x")], b"")
    }))
    .await;
    assert!(matches!(plain, Err(BackendError::Failed(m)) if m.contains("non-https")));
}

#[tokio::test]
async fn real_fetch_rejects_bad_responses() {
    let big = vec![b' '; 70 * 1024];
    let cases: Vec<(&str, Handler)> = vec![
        ("404", Arc::new(|_: &str, _| respond(404, &[], b"{}"))),
        (
            "not json",
            Arc::new(|_: &str, _| respond(200, &[], b"<html>")),
        ),
        (
            "m.server not a string",
            Arc::new(|_: &str, _| respond(200, &[], br#"{"m.server": 5}"#)),
        ),
        (
            "oversized",
            Arc::new(move |_: &str, _| {
                let mut body = br#"{"m.server": "a.example"}"#.to_vec();
                body.extend_from_slice(&big);
                respond(200, &[], &body)
            }),
        ),
    ];
    for (what, handler) in cases {
        assert!(
            matches!(fetch(handler).await, Err(BackendError::Failed(_))),
            "{what} must fail"
        );
    }
}

#[tokio::test]
async fn real_fetch_verifies_the_certificate() {
    let (port, _cert) = test_tls::serve(Arc::new(|_: &str, _| {
        respond(200, &[], br#"{"m.server": "a.example"}"#)
    }))
    .await;
    let backend = SystemBackend::new(&loopback_discovery(), test_tls::client_config(None))
        .unwrap()
        .with_https_port(port);
    let r = backend.well_known("127.0.0.1").await;
    assert!(
        matches!(r, Err(BackendError::Failed(m)) if m.contains("TLS")),
        "untrusted cert"
    );
}

#[tokio::test]
async fn real_fetch_times_out() {
    // Accepts TCP but never speaks TLS.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let backend = SystemBackend::new(&loopback_discovery(), test_tls::client_config(None))
        .unwrap()
        .with_https_port(port)
        .with_well_known_timeout(Duration::from_millis(200));
    let started = Instant::now();
    let r = backend.well_known("127.0.0.1").await;
    assert!(matches!(r, Err(BackendError::Failed(m)) if m.contains("timed out")));
    assert!(started.elapsed() < Duration::from_secs(3));
    hold.abort();
}

#[tokio::test]
async fn real_fetch_never_connects_to_a_refused_address() {
    // A listener that counts connections: the well-known host is loopback, which the
    // destination policy refuses unless `allow_destinations` names it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    let hold = tokio::spawn(async move {
        while let Ok((_s, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let refusing = DiscoveryConfig {
        allow_destinations: Vec::new(),
        ..loopback_discovery()
    };
    let backend = SystemBackend::new(&refusing, test_tls::client_config(None))
        .unwrap()
        .with_https_port(port)
        .with_well_known_timeout(Duration::from_secs(2));
    let r = backend.well_known("127.0.0.1").await;
    assert!(
        matches!(&r, Err(BackendError::Failed(m)) if m.contains("does not connect to")),
        "{r:?}"
    );
    // Allowed explicitly, the same fetch connects (the listener is real).
    let backend = SystemBackend::new(&loopback_discovery(), test_tls::client_config(None))
        .unwrap()
        .with_https_port(port)
        .with_well_known_timeout(Duration::from_millis(300));
    let _ = backend.well_known("127.0.0.1").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    hold.abort();
}

#[test]
fn cache_control_parsing() {
    let mut h = http::HeaderMap::new();
    assert_eq!(system::max_age(&h), None);
    h.insert("cache-control", "public, Max-Age=3600".parse().unwrap());
    assert_eq!(system::max_age(&h), Some(Duration::from_secs(3600)));
    h.insert("cache-control", "max-age=60, no-store".parse().unwrap());
    assert_eq!(system::max_age(&h), Some(Duration::ZERO));
    h.insert("cache-control", "max-age=abc".parse().unwrap());
    assert_eq!(system::max_age(&h), None);
}

#[tokio::test]
async fn resolver_is_shareable_across_tasks() {
    let fake = Fake::default().ip("hs.example", &["192.0.2.2"]);
    let (r, _) = resolver(fake);
    let r = Arc::new(r);
    let task = tokio::spawn({
        let r = r.clone();
        async move { r.resolve("hs.example").await }
    });
    assert_eq!(
        task.await.unwrap().unwrap().addrs,
        addrs(&["192.0.2.2:8448"])
    );
}

#[test]
fn destination_policy_refuses_the_guards_own_host_and_link_by_default() {
    let p = DestinationPolicy::new(&[], &[]);
    for ip in [
        "127.0.0.1",
        "127.9.9.9",
        "0.0.0.0",
        "169.254.1.1",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.0.1",
    ] {
        assert!(!p.allows(ip.parse().unwrap()), "{ip} refused by default");
    }
    for ip in [
        "192.0.2.10",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "2001:db8::20",
        "fc00::1",
        "::ffff:192.0.2.10",
    ] {
        assert!(
            p.allows(ip.parse().unwrap()),
            "{ip} allowed by default (private ranges are configurable)"
        );
    }
    let lab = DestinationPolicy::new(
        &["127.0.0.0/8".parse().unwrap()],
        &["10.0.0.0/8".parse().unwrap()],
    );
    assert!(lab.allows("127.0.0.1".parse().unwrap()));
    assert!(lab.allows("::ffff:127.0.0.1".parse().unwrap()));
    assert!(
        !lab.allows("::1".parse().unwrap()),
        "allowing 127.0.0.0/8 does not allow ::1"
    );
    assert!(
        !lab.allows("10.1.2.3".parse().unwrap()),
        "configured refusal"
    );
}

#[tokio::test]
async fn resolved_addresses_are_checked_but_routes_are_not() {
    let routes = [route("hs.example", "127.0.0.1:9001", None)];
    let r =
        ServerResolver::routes_only(&routes).with_destinations(DestinationPolicy::new(&[], &[]));
    assert_eq!(
        r.resolve("hs.example").await.unwrap().via,
        Via::Route,
        "the operator named it"
    );
    assert!(matches!(
        r.resolve("127.0.0.1:8448").await,
        Err(DiscoveryError::DestinationRefused(_))
    ));
    assert!(matches!(
        r.resolve("[::1]:8448").await,
        Err(DiscoveryError::DestinationRefused(_))
    ));
    assert_eq!(
        r.resolve("192.0.2.7:8448").await.unwrap().via,
        Via::IpLiteral
    );
}
