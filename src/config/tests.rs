use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::*;

const ORIGIN: &str = "/etc/grenzwacht/guard.toml";

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::from_str(text, ORIGIN)
}

/// Errors as `(line, message)`.
fn errors(text: &str) -> Vec<(usize, String)> {
    let errs = parse(text).expect_err("config should be rejected");
    errs.iter()
        .map(|e| (e.line().expect("every error has a line"), e.message.clone()))
        .collect()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const FULL: &str = r#"
[log]
format = "json"
level = "debug,hyper=info"

[admin]
listen = "127.0.0.1:9200"

[inbound]
listen = "0.0.0.0:8448"

[[protected]]
server_name = "hs1.example.org"
cert = "hs1.crt"
key = "/abs/hs1.key"
upstream = "http://127.0.0.1:8008"
upstream_ca = "ca/up.pem"
signing_key = "keys/hs1.signing.key"

[[protected]]
server_name = "[::1]:8448"
cert = "ip.crt"
key = "ip.key"
upstream = "https://[::1]"

[outbound]
connect_listen = "127.0.0.1:3128"
proxy_listen = "127.0.0.1:8009"
allowed_clients = ["127.0.0.1/32", "10.0.0.0/8", "::1"]
proxy_secret = "s3cret"
interception_ca_dir = "ca"
leaf_validity_secs = 600
roots = ["fed-ca.pem", "/etc/ssl/other.pem"]
connect_timeout_ms = 5000
request_timeout_ms = 30000

[[route]]
server_name = "hs2.example.org:8448"
address = "127.0.0.1:8449"
tls_name = "hs2.example.org"

[[route]]
server_name = "hs3.example.org"
address = "[::1]:8450"

[discovery]
enabled = false
nameservers = ["127.0.0.53:53"]

[limits]
max_request_body = 1000
max_response_body = 2000
max_json_depth = 10
max_pdu_bytes = 300
max_pdus = 5
max_edus = 6

[policy]
unknown_endpoint = "forbidden"
allow_servers = ["good.example"]
deny_servers = ["evil.example"]
deny_classes = ["media"]
deny_inbound_classes = ["third_party", "directory"]
deny_outbound_classes = ["policy_server"]

[store]
path = "state/gw.db"
txn_retention_hours = 24
"#;

#[test]
fn full_config_parses_with_values() {
    let c = parse(FULL).expect("valid");
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.log.level, "debug,hyper=info");
    assert_eq!(c.admin.listen, sa("127.0.0.1:9200"));
    assert_eq!(c.inbound.as_ref().unwrap().listen, sa("0.0.0.0:8448"));

    assert_eq!(c.protected.len(), 2);
    let p = &c.protected[0];
    assert_eq!(p.server_name, "hs1.example.org");
    assert_eq!(p.cert, PathBuf::from("/etc/grenzwacht/hs1.crt"));
    assert_eq!(p.key, PathBuf::from("/abs/hs1.key"));
    assert_eq!(
        p.upstream_ca,
        Some(PathBuf::from("/etc/grenzwacht/ca/up.pem"))
    );
    assert_eq!(
        p.signing_key,
        Some(PathBuf::from("/etc/grenzwacht/keys/hs1.signing.key"))
    );
    assert_eq!(
        p.upstream_parts(),
        Some((false, "127.0.0.1:8008".to_owned()))
    );
    let p2 = &c.protected[1];
    assert_eq!(p2.upstream_parts(), Some((true, "[::1]:443".to_owned())));
    let t = p2.upstream_target().unwrap();
    assert_eq!((t.host.as_str(), t.port, t.https), ("::1", 443, true));
    assert_eq!(p2.upstream_ca, None);

    let o = c.outbound.as_ref().unwrap();
    assert_eq!(o.connect_listen, Some(sa("127.0.0.1:3128")));
    assert_eq!(o.proxy_listen, Some(sa("127.0.0.1:8009")));
    let nets: Vec<String> = o.allowed_clients.iter().map(|n| n.to_string()).collect();
    assert_eq!(nets, ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]);
    assert_eq!(o.secret().unwrap(), Some("s3cret".to_owned()));
    assert_eq!(
        o.interception_ca_dir,
        Some(PathBuf::from("/etc/grenzwacht/ca"))
    );
    assert_eq!(o.leaf_validity_secs, 600);
    assert_eq!(
        o.roots,
        [
            PathBuf::from("/etc/grenzwacht/fed-ca.pem"),
            PathBuf::from("/etc/ssl/other.pem")
        ]
    );
    assert_eq!(o.connect_timeout(), Duration::from_millis(5000));
    assert_eq!(o.request_timeout(), Duration::from_millis(30000));

    assert_eq!(c.routes.len(), 2);
    assert_eq!(c.routes[0].server_name, "hs2.example.org:8448");
    assert_eq!(c.routes[0].address, sa("127.0.0.1:8449"));
    assert_eq!(c.routes[0].tls_name.as_deref(), Some("hs2.example.org"));
    assert_eq!(c.routes[1].address, sa("[::1]:8450"));
    assert_eq!(c.routes[1].tls_name, None);

    assert!(!c.discovery.enabled);
    assert_eq!(c.discovery.nameservers, [sa("127.0.0.53:53")]);
    assert_eq!(
        c.limits,
        LimitsConfig {
            max_request_body: 1000,
            max_response_body: 2000,
            max_json_depth: 10,
            max_pdu_bytes: 300,
            max_pdus: 5,
            max_edus: 6,
            decision_timeout_ms: 20_000,
        }
    );
    assert_eq!(c.policy.unknown_endpoint, UnknownEndpoint::Forbidden);
    assert_eq!(c.policy.allow_servers, ["good.example"]);
    assert_eq!(c.policy.deny_servers, ["evil.example"]);
    assert_eq!(c.policy.deny_classes, [EndpointClass::Media]);
    assert_eq!(
        c.policy.deny_inbound_classes,
        [EndpointClass::ThirdParty, EndpointClass::Directory]
    );
    assert_eq!(
        c.policy.deny_outbound_classes,
        [EndpointClass::PolicyServer]
    );
    assert_eq!(c.store.path, PathBuf::from("/etc/grenzwacht/state/gw.db"));
    assert_eq!(c.store.txn_retention_hours, 24);
    assert_eq!(c.store.txn_retention(), Duration::from_secs(24 * 3600));
}

#[test]
fn empty_config_gets_defaults() {
    let c = parse("").expect("an empty file is valid");
    assert_eq!(c, Config::default());
    assert_eq!(c.log.format, LogFormat::Text);
    assert_eq!(c.log.level, "info");
    assert_eq!(c.admin.listen, sa("127.0.0.1:9100"));
    assert!(c.inbound.is_none() && c.outbound.is_none());
    assert!(c.protected.is_empty() && c.routes.is_empty());
    assert!(c.discovery.enabled);
    assert!(c.discovery.nameservers.is_empty());
    assert_eq!(c.limits.max_request_body, 13_107_200);
    assert_eq!(c.limits.max_response_body, 104_857_600);
    assert_eq!(c.limits.max_json_depth, 64);
    assert_eq!(c.limits.max_pdu_bytes, 65_536);
    assert_eq!(c.limits.max_pdus, 50);
    assert_eq!(c.limits.max_edus, 100);
    assert_eq!(c.policy.unknown_endpoint, UnknownEndpoint::NotFound);
    assert!(c.policy.deny_classes.is_empty());
    assert_eq!(
        c.store.path,
        PathBuf::from("/var/lib/grenzwacht/grenzwacht.db")
    );
    assert_eq!(c.store.txn_retention_hours, 72);
    assert_eq!(c.store.txn_retention(), Duration::from_secs(72 * 3600));
}

#[test]
fn store_defaults_apply_per_key() {
    let c = parse("[store]\ntxn_retention_hours = 5\n").unwrap();
    assert_eq!(c.store.path, Path::new(DEFAULT_STORE_PATH));
    assert_eq!(c.store.txn_retention_hours, 5);
    let c = parse("[store]\npath = \"/srv/gw.db\"\n").unwrap();
    assert_eq!(c.store.path, Path::new("/srv/gw.db"));
    assert_eq!(c.store.txn_retention_hours, 72);
    assert_eq!(c.admission, admission::AdmissionConfig::default());
}

#[test]
fn admission_errors_have_lines() {
    let text = "[limits]\nmax_request_body = 2000\n[admission]\nbody_budget_per_origin = 1000\nheader_timeout_ms = 0\nbody_timout_ms = 5\n";
    let e = errors(text);
    assert_eq!(e.len(), 3, "{e:?}");
    assert_eq!(e[0].0, 4);
    assert!(e[0].1.contains("`admission.body_budget_per_origin` (1000) must be at least `limits.max_request_body` (2000)"), "{e:?}");
    assert_eq!(
        e[1],
        (
            5,
            "`admission.header_timeout_ms` must be greater than 0".to_owned()
        )
    );
    assert_eq!(
        e[2],
        (6, "unknown key `admission.body_timout_ms`".to_owned())
    );
    let c = parse("[admission]\nbody_timeout_ms = 5000\n").unwrap();
    assert_eq!(c.admission.body_timeout_ms, 5000);
    assert_eq!(c.admission.body_budget, 64 << 20);
}

#[test]
fn notices_errors_have_lines() {
    let text = "[[protected]]\nserver_name = \"hs1\"\ncert = \"c\"\nkey = \"k\"\nupstream = \"http://127.0.0.1:8008\"\n[notices]\nenabled = true\nper_sender_per_minute = 0\nlanguage = \"fr\"\nrule_ids = true\n";
    let e = errors(text);
    let msgs: Vec<&str> = e.iter().map(|(_, m)| m.as_str()).collect();
    assert!(
        e.iter()
            .any(|(l, m)| *l == 10 && m == "unknown key `notices.rule_ids`"),
        "{e:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.contains("`notices.language`") || m.contains("fr")),
        "{e:?}"
    );
    let c = parse("[notices]\nenabled = false\n").unwrap();
    assert!(!c.notices.enabled);
    let e = errors("[[protected]]\nserver_name = \"hs1\"\ncert = \"c\"\nkey = \"k\"\nupstream = \"http://127.0.0.1:8008\"\n[notices]\nenabled = true\nper_sender_per_minute = 0\n");
    assert!(
        e.iter().any(|(l, m)| *l == 8 && m.contains("at least 1")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|(l, m)| *l == 1 && m.contains("needs `protected[0].admin_api`")),
        "{e:?}"
    );
    assert_eq!(
        parse("").unwrap().notices,
        notices::NoticesConfig::default()
    );
}

#[test]
fn review_errors_have_lines() {
    let text = "[review]\nfour_eyes = true\ndelivery_backoff_initial_ms = 5000\ndelivery_backoff_max_ms = 1000\n";
    assert_eq!(
        errors(text),
        [(
            4,
            "`review.delivery_backoff_max_ms` must be at least `delivery_backoff_initial_ms`"
                .to_owned()
        )]
    );
    let text = "[review]\ntimeout_decision = \"maybe\"\nfour_eye = true\n";
    let e = errors(text);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].0 == 2 && e[0].1.contains("maybe"), "{e:?}");
    assert_eq!(e[1], (3, "unknown key `review.four_eye`".to_owned()));
    let c = parse("[review]\nfour_eyes = true\ntimeout_decision = \"release\"\n").unwrap();
    assert!(c.review.four_eyes);
    assert_eq!(
        c.review.timeout_decision,
        super::review::TimeoutDecision::Release
    );
    assert_eq!(c.review.timeout_secs, 86_400);
    assert!(!parse("").unwrap().review.four_eyes);
}

#[test]
fn store_errors_have_lines() {
    let text = "[store]\npath = \"gw.db\"\ntxn_retention = 5\n";
    assert_eq!(
        errors(text),
        [(3, "unknown key `store.txn_retention`".to_owned())]
    );
    let text = "[store]\npath = 7\ntxn_retention_hours = \"long\"\n";
    let e = errors(text);
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!(e[0].0, 2);
    assert!(
        e[0].1.starts_with("invalid value for `store.path`:"),
        "{e:?}"
    );
    assert_eq!(e[1].0, 3);
    assert!(
        e[1].1
            .starts_with("invalid value for `store.txn_retention_hours`:"),
        "{e:?}"
    );
    let text = "[limits]\nmax_pdus = 5\n\n[store]\npath = \"\"\ntxn_retention_hours = 0\n";
    assert_eq!(
        errors(text),
        [
            (5, "`store.path` must not be empty".to_owned()),
            (
                6,
                "`store.txn_retention_hours` must be at least 1, got 0".to_owned()
            )
        ]
    );
    let e = errors("store.path = \"/var/lib/grenzwacht/\"\n");
    assert_eq!(
        e,
        [(
            1,
            "`store.path` must name a file, not a directory".to_owned()
        )]
    );
    let e = errors("[store]\npath = \"..\"\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, 2);
    let e = errors("[store]\ntxn_retention_hours = -1\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].1.contains("store.txn_retention_hours"), "{e:?}");
}

#[test]
fn outbound_defaults() {
    let c = parse(
        "[outbound]\nproxy_listen = \"127.0.0.1:8009\"\nallowed_clients = [\"127.0.0.1/32\"]\nproxy_secret = \"x\"\n",
    )
    .unwrap();
    let o = c.outbound.unwrap();
    assert_eq!(o.leaf_validity_secs, 3600);
    assert_eq!(o.connect_timeout_ms, 10_000);
    assert_eq!(o.request_timeout_ms, 60_000);
    assert!(o.roots.is_empty());
    assert_eq!(o.connect_listen, None);
    assert_eq!(o.interception_ca_dir, None);
}

#[test]
fn unknown_top_level_key() {
    let e = errors("[log]\nlevel = \"info\"\n\n[outbund]\nproxy_listen = \"127.0.0.1:1\"\n");
    assert_eq!(e, [(4, "unknown key `outbund`".to_owned())]);
}

#[test]
fn unknown_nested_key_with_display() {
    let text = "[outbound]\nconnect_listen = \"127.0.0.1:3128\"\nconect_listen = \"x\"\n";
    let errs = Config::from_str(text, "guard.toml").unwrap_err();
    let shown = errs.to_string();
    assert!(
        shown.contains("guard.toml:3:1: unknown key `outbound.conect_listen`"),
        "{shown}"
    );
}

#[test]
fn unknown_key_in_array_element() {
    let text = r#"
[[protected]]
server_name = "a.example"
cert = "a.crt"
key = "a.key"
upstream = "http://127.0.0.1:8008"

[[protected]]
server_name = "b.example"
cert = "b.crt"
key = "b.key"
upstream = "http://127.0.0.1:8009"
upstrem_ca = "x.pem"
"#;
    assert_eq!(
        errors(text),
        [(13, "unknown key `protected[1].upstrem_ca`".to_owned())]
    );
}

#[test]
fn unknown_key_in_dotted_and_inline_forms() {
    let text = "outbound.connect_listn = \"127.0.0.1:1\"\nroute = [{ server_name = \"a.example\", address = \"127.0.0.1:1\", tls = \"a\" }]\n";
    let e = errors(text);
    assert_eq!(
        e,
        [
            (1, "unknown key `outbound.connect_listn`".to_owned()),
            (2, "unknown key `route[0].tls`".to_owned())
        ]
    );
}

#[test]
fn wrong_type_reports_line_and_key() {
    let text = "[limits]\nmax_pdus = 50\nmax_edus = \"many\"\n";
    let e = errors(text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, 3);
    assert!(
        e[0].1.starts_with("invalid value for `limits.max_edus`:"),
        "{e:?}"
    );
    assert!(e[0].1.contains("expected usize"), "{e:?}");
    // The column points at the value.
    let errs = parse(text).unwrap_err();
    assert_eq!(errs.errors[0].location.unwrap().column, 12);
}

#[test]
fn several_wrong_values_in_one_table_all_reported() {
    let text = "[outbound]\nleaf_validity_secs = \"long\"\nbogus = 1\nconnect_listen = \"nope\"\nroots = \"x.pem\"\n";
    let e = errors(text);
    let lines: Vec<usize> = e.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, [2, 3, 4, 5], "{e:?}");
    assert!(e[0].1.contains("outbound.leaf_validity_secs"));
    assert_eq!(e[1].1, "unknown key `outbound.bogus`");
    assert!(e[2].1.contains("outbound.connect_listen"));
    assert!(e[3].1.contains("outbound.roots"));
}

#[test]
fn many_errors_across_sections_reported_together() {
    let text = r#"[log]
format = "xml"

[admin]
listen = 9100

[[protected]]
server_name = "a.example"
cert = "a.crt"
key = "a.key"
upstream = "http://127.0.0.1:8008"

[[protected]]
server_name = "b.example"
cert = 5
key = "b.key"
upstream = "http://127.0.0.1:8009"

[[route]]
server_name = "c.example"

[policy]
deny_classes = ["media", "warez"]
extra = true

[discovery]
enabled = "yes"
"#;
    let e = errors(text);
    let lines: Vec<usize> = e.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, [2, 5, 15, 19, 23, 24, 27], "{e:#?}");
    assert!(e[0].1.contains("`log.format`") && e[0].1.contains("unknown variant `xml`"));
    assert!(e[1].1.contains("`admin.listen`"));
    assert!(e[2].1.contains("`protected[1].cert`"));
    assert_eq!(e[3].1, "missing required key `route[0].address`");
    assert!(e[4].1.contains("`policy.deny_classes[1]`") && e[4].1.contains("warez"));
    assert_eq!(e[5].1, "unknown key `policy.extra`");
    assert!(e[6].1.contains("`discovery.enabled`"));
}

#[test]
fn missing_required_keys() {
    let e = errors(
        "[inbound]\n\n[[protected]]\nserver_name = \"a.example\"\ncert = \"a\"\nkey = \"b\"\n",
    );
    assert_eq!(
        e,
        [
            (1, "missing required key `inbound.listen`".to_owned()),
            (3, "missing required key `protected[0].upstream`".to_owned()),
        ]
    );
}

#[test]
fn syntax_error_has_position() {
    let errs = Config::from_str("[log]\nlevel = \n", "g.toml").unwrap_err();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs.errors[0].line(), Some(2));
    assert!(errs.to_string().starts_with("g.toml:2:"), "{errs}");
    assert!(errs.errors[0].message.contains("syntax"));
}

#[test]
fn table_of_wrong_kind() {
    let e = errors("log = 5\nprotected = \"x\"\n");
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!(e[0].0, 1);
    assert!(e[0].1.starts_with("invalid `log`"), "{e:?}");
    assert_eq!(e[1].0, 2);
    assert!(e[1].1.contains("array of tables"), "{e:?}");
}

// ---- cross-field checks ------------------------------------------------------------------

const P1: &str = "[[protected]]\nserver_name = \"a.example\"\ncert = \"a\"\nkey = \"b\"\nupstream = \"http://127.0.0.1:8008\"\n";

#[test]
fn inbound_requires_protected() {
    let e = errors("[inbound]\nlisten = \"0.0.0.0:8448\"\nverify_signatures = false\n[keys]\nverify_pdus = false\n");
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].0, 1);
    assert!(e[0].1.contains("at least one `[[protected]]`"), "{e:?}");
    // ... and passes with one.
    parse(&format!("[inbound]\nlisten = \"0.0.0.0:8448\"\nverify_signatures = false\n[keys]\nverify_pdus = false\n{P1}")).unwrap();
}

#[test]
fn inbound_signature_verification_needs_the_outbound_path() {
    // Both verifications need key fetches over [outbound]: both are reported, with lines.
    let e = errors(&format!("[inbound]\nlisten = \"0.0.0.0:8448\"\n{P1}"));
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e.iter()
            .any(|(l, m)| *l == 1 && m.contains("verify_signatures")),
        "{e:?}"
    );
    assert!(
        e.iter().any(|(l, m)| *l == 1 && m.contains("verify_pdus")),
        "{e:?}"
    );
    let e = errors(&format!("[inbound]\nlisten = \"0.0.0.0:8448\"\nverify_signatures = false\n[keys]\nverify_pdus = true\n{P1}"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, 4, "{e:?}");
    assert!(e[0].1.contains("verify_pdus"), "{e:?}");
    let c = parse(&format!("[inbound]\nlisten = \"0.0.0.0:8448\"\nverify_signatures = false\n[keys]\nverify_pdus = false\n{P1}")).unwrap();
    assert!(!c.inbound.unwrap().verify_signatures);
    assert!(!c.keys.verify_pdus);
    // Default on.
    assert!(parse("").unwrap().keys.verify_pdus);
}

#[test]
fn duplicate_protected_server_name() {
    let text = format!("{P1}{}", P1.replace("a.example", "A.example"));
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, 7);
    assert!(e[0].1.contains("duplicate protected server_name"), "{e:?}");
}

#[test]
fn duplicate_route_server_name() {
    let r = "[[route]]\nserver_name = \"x.example:8448\"\naddress = \"127.0.0.1:1\"\n";
    let e = errors(&format!("{r}{r}"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, 5);
    assert!(e[0].1.contains("duplicate route server_name"), "{e:?}");
}

#[test]
fn connect_listen_requires_ca_dir() {
    let text =
        "[outbound]\nconnect_listen = \"127.0.0.1:3128\"\nallowed_clients = [\"127.0.0.1\"]\nproxy_secret = \"s\"\n";
    let e = errors(text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, 2);
    assert!(e[0].1.contains("interception_ca_dir"), "{e:?}");
    parse(&format!("{text}interception_ca_dir = \"ca\"\n")).unwrap();
}

#[test]
fn connect_listen_requires_credentials_unless_explicitly_allowed() {
    let base = "[outbound]\nconnect_listen = \"127.0.0.1:3128\"\nallowed_clients = [\"127.0.0.1\"]\ninterception_ca_dir = \"ca\"\n";
    let e = errors(base);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, 2);
    assert!(e[0].1.contains("requires `outbound.proxy_secret`"), "{e:?}");
    parse(&format!("{base}proxy_secret_file = \"secret\"\n")).unwrap();
    let c = parse(&format!("{base}allow_unauthenticated_connect = true\n")).unwrap();
    assert!(c.outbound.unwrap().allow_unauthenticated_connect);
}

#[test]
fn proxy_listen_requires_exactly_one_secret() {
    let base =
        "[outbound]\nproxy_listen = \"127.0.0.1:8009\"\nallowed_clients = [\"127.0.0.1/32\"]\n";
    let none = errors(base);
    assert_eq!(none.len(), 1, "{none:?}");
    assert_eq!(none[0].0, 2);
    assert!(
        none[0].1.contains("requires `outbound.proxy_secret`"),
        "{none:?}"
    );

    let both = errors(&format!(
        "{base}proxy_secret = \"a\"\nproxy_secret_file = \"s\"\n"
    ));
    assert_eq!(both.len(), 1, "{both:?}");
    assert_eq!(both[0].0, 5);
    assert!(both[0].1.contains("only one"), "{both:?}");

    let empty = errors(&format!("{base}proxy_secret = \"\"\n"));
    assert_eq!(empty.len(), 1);
    assert!(empty[0].1.contains("must not be empty"));

    parse(&format!("{base}proxy_secret_file = \"s\"\n")).unwrap();
}

#[test]
fn outbound_listener_requires_allowed_clients() {
    let e = errors("[outbound]\nproxy_listen = \"127.0.0.1:8009\"\nproxy_secret = \"s\"\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, 2);
    assert!(e[0].1.contains("allowed_clients"), "{e:?}");
    let e = errors("[outbound]\nproxy_listen = \"127.0.0.1:8009\"\nproxy_secret = \"s\"\nallowed_clients = []\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, 4);
    // No listener: an empty outbound table is fine.
    parse("[outbound]\n").unwrap();
}

#[test]
fn allowed_clients_rejects_garbage() {
    let e = errors("[outbound]\nallowed_clients = [\"127.0.0.1/32\", \"localhost\"]\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].1.contains("`outbound.allowed_clients`") && e[0].1.contains("localhost"),
        "{e:?}"
    );
}

#[test]
fn upstream_must_be_http_url() {
    for bad in [
        "ftp://127.0.0.1:21",
        "127.0.0.1:8008",
        "http://",
        "http://127.0.0.1:8008/base",
        "http://user@127.0.0.1:8008",
        "http://127.0.0.1:8008?x=1",
    ] {
        let text = P1.replace("http://127.0.0.1:8008", bad);
        let e = errors(&text);
        assert_eq!(e.len(), 1, "{bad}: {e:?}");
        assert_eq!(e[0].0, 5, "{bad}");
        assert!(e[0].1.contains("protected[0].upstream"), "{bad}: {e:?}");
    }
    for good in [
        "http://127.0.0.1:8008/",
        "https://hs.internal",
        "http://[::1]:8008",
    ] {
        let c = parse(&P1.replace("http://127.0.0.1:8008", good)).unwrap();
        assert!(c.protected[0].upstream_parts().is_some(), "{good}");
    }
}

#[test]
fn server_in_both_allow_and_deny() {
    let text = "[policy]\nallow_servers = [\"a.example\", \"b.example\"]\ndeny_servers = [\"c.example\",\n  \"B.example\"]\n";
    let e = errors(text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, 4);
    assert!(e[0].1.contains("both"), "{e:?}");
}

#[test]
fn invalid_server_names_and_tls_name() {
    let text = "[[route]]\nserver_name = \"https://x.example\"\naddress = \"127.0.0.1:1\"\ntls_name = \"not a name\"\n\n[policy]\ndeny_servers = [\"a b\"]\n";
    let e = errors(text);
    let lines: Vec<usize> = e.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, [2, 4, 7], "{e:?}");
}

#[test]
fn route_address_must_be_ip_literal() {
    let e = errors("[[route]]\nserver_name = \"x.example\"\naddress = \"x.example:8448\"\n");
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].0, 3);
    assert!(e[0].1.contains("route[0].address"), "{e:?}");
}

#[test]
fn leaf_validity_minimum_and_timeouts() {
    let e = errors("[outbound]\nleaf_validity_secs = 299\nconnect_timeout_ms = 0\n");
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!((e[0].0, e[1].0), (2, 3));
    assert!(e[0].1.contains("at least 300"));
    parse("[outbound]\nleaf_validity_secs = 300\n").unwrap();
}

#[test]
fn cross_field_and_parse_errors_reported_together() {
    let text = "[outbound]\nconnect_listen = \"127.0.0.1:3128\"\nbogus = 1\n\n[inbound]\nlisten = \"0.0.0.0:8448\"\n\n[limits]\nmax_pdus = -1\n";
    let e = errors(text);
    let lines: Vec<usize> = e.iter().map(|(l, _)| *l).collect();
    // Unknown key, three outbound cross-field errors, inbound's cross-field error, a wrong value.
    assert_eq!(lines, [2, 2, 2, 3, 5, 9], "{e:?}");
    assert!(e[0].1.contains("interception_ca_dir"), "{e:?}");
    assert!(e[1].1.contains("proxy_secret"), "{e:?}");
    assert!(e[2].1.contains("allowed_clients"), "{e:?}");
}

// ---- paths and files -----------------------------------------------------------------------

#[test]
fn relative_paths_resolve_against_config_dir() {
    let text = format!(
        "{P1}\n[outbound]\nproxy_secret_file = \"secret\"\ninterception_ca_dir = \"../ca\"\nroots = [\"r.pem\"]\n"
    );
    let c = Config::from_str(&text, "/srv/gw/conf/guard.toml").unwrap();
    assert_eq!(c.protected[0].cert, Path::new("/srv/gw/conf/a"));
    let o = c.outbound.unwrap();
    assert_eq!(
        o.proxy_secret_file.unwrap(),
        Path::new("/srv/gw/conf/secret")
    );
    assert_eq!(
        o.interception_ca_dir.unwrap(),
        Path::new("/srv/gw/conf/../ca")
    );
    assert_eq!(o.roots, [PathBuf::from("/srv/gw/conf/r.pem")]);
    // No directory in the origin: paths stay as written.
    let c = Config::from_str(P1, "guard.toml").unwrap();
    assert_eq!(c.protected[0].cert, Path::new("a"));
}

#[test]
fn store_path_resolves_against_config_dir() {
    let c = Config::from_str("[store]\npath = \"state/gw.db\"\n", "/srv/gw/guard.toml").unwrap();
    assert_eq!(c.store.path, Path::new("/srv/gw/state/gw.db"));
    let c = Config::from_str("[store]\npath = \"/data/gw.db\"\n", "/srv/gw/guard.toml").unwrap();
    assert_eq!(c.store.path, Path::new("/data/gw.db"));
    let c = Config::from_str("[store]\npath = \"gw.db\"\n", "guard.toml").unwrap();
    assert_eq!(c.store.path, Path::new("gw.db"));
}

#[test]
fn load_reads_file_resolves_paths_and_secret_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "  t0ken\n").unwrap();
    let text = "[outbound]\nproxy_listen = \"127.0.0.1:8009\"\nallowed_clients = [\"127.0.0.1/32\"]\nproxy_secret_file = \"secret\"\n";
    let path = dir.path().join("guard.toml");
    std::fs::write(&path, text).unwrap();
    let c = Config::load(&path).unwrap();
    let o = c.outbound.unwrap();
    assert_eq!(
        o.proxy_secret_file.as_deref(),
        Some(dir.path().join("secret").as_path())
    );
    assert_eq!(o.secret().unwrap().as_deref(), Some("t0ken"));

    std::fs::write(dir.path().join("secret"), "\n").unwrap();
    assert!(o.secret().unwrap_err().message.contains("empty"));
    std::fs::remove_file(dir.path().join("secret")).unwrap();
    assert!(o.secret().is_err());
}

#[test]
fn load_missing_file_is_one_error_without_position() {
    let errs = Config::load("/nonexistent/grenzwacht.toml").unwrap_err();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs.errors[0].location, None);
    assert!(errs
        .to_string()
        .starts_with("/nonexistent/grenzwacht.toml: cannot read config file"));
}

#[test]
fn example_deployment_config_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grenzwacht.example.toml");
    let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let dir = path.parent().unwrap();
    assert_eq!(c.protected.len(), 2);
    assert!(c.inbound.is_some());
    assert!(c.protected[0].cert.starts_with(dir));
    assert!(c.protected.iter().all(|p| p.upstream_parts().is_some()));
    let o = c.outbound.as_ref().unwrap();
    assert!(o.connect_listen.is_some() && o.proxy_listen.is_some());
    assert_eq!(c.routes.len(), 2);
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.store.path, Path::new("/var/lib/grenzwacht/grenzwacht.db"));
    assert_eq!(c.store.txn_retention_hours, 72);
}

#[test]
fn ti_deployment_config_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/ti/grenzwacht.toml");
    let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let t = c.ti.as_ref().expect("[ti]");
    assert_eq!(t.homeserver.len(), 1);
    assert!(t.homeserver[0].client_listen.is_some());
    assert!(t.release_encrypted);
    assert!(t.vzd_url.is_some() || t.list_file.is_some());
}

#[test]
fn errors_display_one_per_line() {
    let errs = Config::from_str("a = 1\nb = 2\n", "x.toml").unwrap_err();
    assert_eq!(
        errs.to_string(),
        "x.toml:1:1: unknown key `a`\nx.toml:2:1: unknown key `b`"
    );
}

#[test]
fn wrong_types_in_different_array_elements_all_reported() {
    let text = r#"[[route]]
server_name = "a.example"
address = "127.0.0.1:1"
tls_name = 7

[[route]]
server_name = "b.example"
address = "not an address"

[[route]]
server_name = "c.example"
address = "127.0.0.1:3"
"#;
    let e = errors(text);
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!(e[0].0, 4);
    assert!(e[0].1.contains("`route[0].tls_name`"), "{e:?}");
    assert_eq!(e[1].0, 8);
    assert!(e[1].1.contains("`route[1].address`"), "{e:?}");
}

#[test]
fn ti_section_parses_and_errors_have_lines() {
    let ok = format!(
        "{P1}[ti]\ntsl_roots = \"ti/roots.json\"\nintermediates = [\"ti/ca.der\"]\nlist_file = \"ti/list.jws\"\nstate_dir = \"ti/state\"\nvariant = \"epa\"\n[[ti.homeserver]]\nserver_name = \"a.example\"\nadmin_url = \"http://127.0.0.1:8008\"\nadmin_token_file = \"admin.token\"\nclient_listen = \"127.0.0.1:8443\"\nclient_upstream = \"http://127.0.0.1:8008\"\n"
    );
    let c = parse(&ok).unwrap();
    let t = c.ti.expect("[ti]");
    assert_eq!(t.variant, ti::TiVariant::Epa);
    assert_eq!(t.max_age_secs, 72 * 3600, "72 h by default");
    assert!(t.release_encrypted);
    assert_eq!(t.tsl_roots, PathBuf::from("/etc/grenzwacht/ti/roots.json"));
    assert_eq!(t.homeserver[0].client_listen, Some(sa("127.0.0.1:8443")));
    assert!(parse("").unwrap().ti.is_none(), "off without the section");

    // An unknown key, both sources, a homeserver that is not protected, a listener without
    // upstream: all reported at once with their lines.
    let bad = format!(
        "{P1}[ti]\ntsl_roots = \"r\"\nstate_dir = \"s\"\nvzd_url = \"https://vzd.example/list\"\nlist_file = \"l\"\nmax_age = 5\n[[ti.homeserver]]\nserver_name = \"b.example\"\nadmin_url = \"http://127.0.0.1:8008\"\nadmin_token_file = \"t\"\nclient_listen = \"127.0.0.1:8443\"\n"
    );
    let e = errors(&bad);
    assert!(
        e.iter().any(|(l, m)| *l == 11 && m.contains("max_age")),
        "{e:?}"
    );
    let bad = format!(
        "{P1}[ti]\ntsl_roots = \"r\"\nstate_dir = \"s\"\nvzd_url = \"https://vzd.example/list\"\nlist_file = \"l\"\n[[ti.homeserver]]\nserver_name = \"b.example\"\nadmin_url = \"http://127.0.0.1:8008\"\nadmin_token_file = \"t\"\nclient_listen = \"127.0.0.1:8443\"\n"
    );
    let e = errors(&bad);
    assert!(
        e.iter()
            .any(|(l, m)| *l == 10 && m.contains("exclude each other")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|(l, m)| *l == 12 && m.contains("not a [[protected]] server_name")),
        "{e:?}"
    );
    assert!(
        e.iter().any(|(_, m)| m.contains("needs `client_upstream`")),
        "{e:?}"
    );
    let e = errors(&format!(
        "{P1}[inbound]\nlisten = \"127.0.0.1:8448\"\nverify_signatures = false\n[outbound]\nproxy_listen = \"127.0.0.1:3128\"\nproxy_secret = \"0123456789abcdef0123\"\n[ti]\ntsl_roots = \"r\"\nstate_dir = \"s\"\nlist_file = \"l\"\n"
    ));
    assert!(
        e.iter()
            .any(|(l, m)| *l == 8 && m.contains("needs `inbound.verify_signatures = true`")),
        "{e:?}"
    );
    let e = errors(&format!("{P1}[ti]\ntsl_roots = \"r\"\nstate_dir = \"s\"\n"));
    assert!(
        e.iter().any(|(_, m)| m.contains("needs a list source")),
        "{e:?}"
    );
}

const SPLIT_LINKS: &str = r#"
[split.send]
kind = "udp"
address = "127.0.0.1:7400"
[split.receive]
kind = "udp"
address = "127.0.0.1:7401"
"#;

#[test]
fn the_low_half_holds_no_key_of_a_high_server() {
    let text = format!(
        "[inbound]\nlisten = \"127.0.0.1:8448\"\n[outbound]\nproxy_listen = \"127.0.0.1:3128\"\n[[protected]]\nserver_name = \"hs1.example\"\ncert = \"a\"\nkey = \"b\"\nupstream = \"http://127.0.0.1:8008\"\nsigning_key = \"hs1.key\"\n[keys]\nnotary_name = \"gw.example\"\nguard_key = \"g\"\n[split]\nhalf = \"low\"\n{SPLIT_LINKS}"
    );
    let e = errors(&text);
    let msgs: Vec<&str> = e.iter().map(|(_, m)| m.as_str()).collect();
    assert!(
        msgs.iter()
            .any(|m| m.contains("`protected[0].signing_key` is not allowed on the LOW half")),
        "{msgs:#?}"
    );
    assert!(msgs
        .iter()
        .any(|m| m.contains("`protected[0].upstream` is not allowed on the LOW half")));
    assert!(msgs
        .iter()
        .any(|m| m.contains("`[outbound]` listeners are not allowed on the LOW half")));
    assert!(msgs
        .iter()
        .any(|m| m.contains("notary_name` is not supported on a split appliance")));
}

#[test]
fn the_high_half_has_no_inbound_listener_and_needs_upstreams() {
    let text = format!(
        "[inbound]\nlisten = \"127.0.0.1:8448\"\n[outbound]\nproxy_listen = \"127.0.0.1:3128\"\n[[protected]]\nserver_name = \"hs1.example\"\ncert = \"a\"\nkey = \"b\"\n[split]\nhalf = \"high\"\nmtu_typo = 1\n{SPLIT_LINKS}"
    );
    let e = errors(&text);
    let msgs: Vec<&str> = e.iter().map(|(_, m)| m.as_str()).collect();
    assert!(
        msgs.iter()
            .any(|m| m.contains("`[inbound]` is not allowed on the HIGH half")),
        "{msgs:#?}"
    );
    assert!(msgs.contains(&"missing required key `protected[0].upstream`"));
    assert!(msgs.contains(&"unknown key `split.mtu_typo`"));
}

#[test]
fn split_halves_load() {
    let low = format!(
        "[inbound]\nlisten = \"127.0.0.1:8448\"\nverify_signatures = false\n[keys]\nverify_pdus = false\n[[protected]]\nserver_name = \"hs1.example\"\ncert = \"a\"\nkey = \"b\"\n[split]\nhalf = \"low\"\nverifier = \"simulated-card\"\n{SPLIT_LINKS}"
    );
    let c = parse(&low).unwrap_or_else(|e| panic!("{e}"));
    let s = c.split.unwrap();
    assert_eq!(s.half, super::split::HalfName::Low);
    assert_eq!(s.verifier, super::split::VerifierKind::SimulatedCard);
    assert_eq!(s.send.mtu, 1500);
    assert_eq!(s.request_timeout_ms, 60_000);
    let bad = format!("[split]\nhalf = \"middle\"\n{SPLIT_LINKS}");
    assert!(errors(&bad)[0].1.contains("`split.half`"));
}

#[test]
fn split_deployment_configs_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/split");
    let high = Config::load(dir.join("high.toml")).unwrap_or_else(|e| panic!("{e}"));
    let low = Config::load(dir.join("low.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        high.split.as_ref().unwrap().half,
        super::split::HalfName::High
    );
    assert_eq!(
        low.split.as_ref().unwrap().half,
        super::split::HalfName::Low
    );
    assert!(high.inbound.is_none() && low.inbound.is_some());
    assert!(high.protected[0].signing_key.is_some());
    assert!(low.protected.iter().all(|p| p.signing_key.is_none()));
    // Each half sends where the other receives.
    let (h, l) = (high.split.unwrap(), low.split.unwrap());
    assert_eq!(h.send.address, l.receive.address);
    assert_eq!(l.send.address, h.receive.address);
}
