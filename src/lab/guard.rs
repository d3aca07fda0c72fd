//! The guard's configuration in the lab (`DIR/guard.toml`, schema of `crate::config`).
//!
//! Built with `toml_edit` so every string is quoted correctly whatever the paths contain.
//! Discovery is disabled: the lab's server names are IP literals with ports, reachable without
//! any route or DNS, and a disabled resolver guarantees no lookup ever leaves the machine.
use std::net::SocketAddr;
use std::path::PathBuf;

use toml_edit::{value, Array, ArrayOfTables, DocumentMut, Item, Table};

/// Outbound listener settings of the lab's guard.
#[derive(Debug, Clone)]
pub enum GuardOutbound {
    /// `connect_listen` with the interception CA in `ca_dir`.
    Connect {
        /// Listen address.
        listen: SocketAddr,
        /// Directory holding `ca.crt` and `ca.key`.
        ca_dir: PathBuf,
    },
    /// `proxy_listen` with a bearer secret.
    SynapseProxy {
        /// Listen address.
        listen: SocketAddr,
        /// The shared secret.
        secret: String,
    },
}

/// Inputs of [`guard_toml`].
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// Admin listener (`/health`, `/metrics`).
    pub admin: SocketAddr,
    /// Inbound TLS listener (hs1's public federation address).
    pub inbound: SocketAddr,
    /// hs1's server name.
    pub protected_server_name: String,
    /// Certificate presented for hs1.
    pub protected_cert: PathBuf,
    /// Its key.
    pub protected_key: PathBuf,
    /// hs1's plain-http federation listener.
    pub upstream: String,
    /// hs1's signing key (Synapse format).
    pub signing_key: PathBuf,
    /// Outbound listener.
    pub outbound: GuardOutbound,
    /// Roots the guard trusts for destinations (the lab's test CA).
    pub roots: Vec<PathBuf>,
    /// `[policy] deny_servers`.
    pub deny_servers: Vec<String>,
    /// `[keys] guard_key` (Synapse format; attestation and inbound re-signing).
    pub guard_key: PathBuf,
    /// `[store] path`.
    pub store: PathBuf,
    /// `[dlp] policies`: the lab's copy of the shipped rule set ([`SHIPPED_POLICIES`]).
    pub policies: PathBuf,
}

/// The shipped DLP rule set (`policies/`), built into the binary so the lab runs from any
/// directory: (file name, content).
pub const SHIPPED_POLICIES: &[(&str, &str)] = &[
    ("markings.toml", include_str!("../../policies/markings.toml")),
    ("pii.toml", include_str!("../../policies/pii.toml")),
    ("secrets.toml", include_str!("../../policies/secrets.toml")),
];

/// The name under which the lab guard serves as hs1's notary (`trusted_key_servers`). No
/// server listens there: the guard answers key queries to it itself, so an IP literal that
/// needs no name resolution.
pub const LAB_NOTARY_NAME: &str = "127.0.0.1:1";

/// The shipped rule that redacts the upper-case marking `GEHEIM` in both directions (an EDU
/// carrying it, e.g. a presence `status_msg`, is dropped), so the demo shows it.
pub const LAB_RULE_ID: &str = "marking.geheim";

fn str_array<I: IntoIterator<Item = String>>(items: I) -> Array {
    let mut a = Array::new();
    for i in items {
        a.push(i);
    }
    a
}

/// Renders `guard.toml`.
pub fn guard_toml(c: &GuardConfig) -> String {
    let mut doc = DocumentMut::new();
    let mut log = Table::new();
    log["format"] = value("text");
    log["level"] = value("info");
    doc["log"] = Item::Table(log);

    let mut admin = Table::new();
    admin["listen"] = value(c.admin.to_string());
    doc["admin"] = Item::Table(admin);

    let mut inbound = Table::new();
    inbound["listen"] = value(c.inbound.to_string());
    doc["inbound"] = Item::Table(inbound);

    let mut prot = Table::new();
    prot["server_name"] = value(c.protected_server_name.clone());
    prot["cert"] = value(c.protected_cert.display().to_string());
    prot["key"] = value(c.protected_key.display().to_string());
    prot["upstream"] = value(c.upstream.clone());
    prot["signing_key"] = value(c.signing_key.display().to_string());
    let mut protected = ArrayOfTables::new();
    protected.push(prot);
    doc["protected"] = Item::ArrayOfTables(protected);

    let mut out = Table::new();
    match &c.outbound {
        GuardOutbound::Connect { listen, ca_dir } => {
            out["connect_listen"] = value(listen.to_string());
            out["interception_ca_dir"] = value(ca_dir.display().to_string());
        }
        GuardOutbound::SynapseProxy { listen, secret } => {
            out["proxy_listen"] = value(listen.to_string());
            out["proxy_secret"] = value(secret.clone());
        }
    }
    out["allowed_clients"] = value(str_array(["127.0.0.1/32".to_string()]));
    out["roots"] = value(str_array(c.roots.iter().map(|p| p.display().to_string())));
    doc["outbound"] = Item::Table(out);

    let mut disc = Table::new();
    disc["enabled"] = value(false);
    doc["discovery"] = Item::Table(disc);

    let mut policy = Table::new();
    policy["unknown_endpoint"] = value("not_found");
    policy["deny_servers"] = value(str_array(c.deny_servers.iter().cloned()));
    doc["policy"] = Item::Table(policy);

    let mut keys = Table::new();
    keys["guard_key"] = value(c.guard_key.display().to_string());
    keys["notary_name"] = value(LAB_NOTARY_NAME);
    doc["keys"] = Item::Table(keys);

    let mut store = Table::new();
    store["path"] = value(c.store.display().to_string());
    doc["store"] = Item::Table(store);

    let mut dlp = Table::new();
    dlp["policies"] = value(c.policies.display().to_string());
    dlp["watch_interval_ms"] = value(1000);
    doc["dlp"] = Item::Table(dlp);
    doc.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(outbound: GuardOutbound) -> GuardConfig {
        GuardConfig {
            admin: "127.0.0.1:1".parse().unwrap(),
            inbound: "127.0.0.1:2".parse().unwrap(),
            protected_server_name: "127.0.0.1:2".into(),
            protected_cert: "/lab/certs/hs1 \"front\".crt".into(),
            protected_key: "/lab/certs/hs1.key".into(),
            upstream: "http://127.0.0.1:3".into(),
            signing_key: "/lab/hs1/signing.key".into(),
            outbound,
            roots: vec!["/lab/certs/ca.crt".into()],
            deny_servers: vec!["127.0.0.2:8448".into()],
            guard_key: "/lab/guard.signing.key".into(),
            store: "/lab/grenzwacht.db".into(),
            policies: "/lab/policies".into(),
        }
    }

    #[test]
    fn connect_config_parses_back_with_the_schema_keys() {
        let text = guard_toml(&cfg(GuardOutbound::Connect {
            listen: "127.0.0.1:4".parse().unwrap(),
            ca_dir: "/lab/interception-ca".into(),
        }));
        let v: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(v["admin"]["listen"].as_str(), Some("127.0.0.1:1"));
        assert_eq!(v["inbound"]["listen"].as_str(), Some("127.0.0.1:2"));
        let p = &v["protected"].as_array().unwrap()[0];
        assert_eq!(p["server_name"].as_str(), Some("127.0.0.1:2"));
        assert_eq!(p["cert"].as_str(), Some("/lab/certs/hs1 \"front\".crt"));
        assert_eq!(p["upstream"].as_str(), Some("http://127.0.0.1:3"));
        assert_eq!(v["outbound"]["connect_listen"].as_str(), Some("127.0.0.1:4"));
        assert_eq!(
            v["outbound"]["interception_ca_dir"].as_str(),
            Some("/lab/interception-ca")
        );
        assert!(v["outbound"].get("proxy_listen").is_none());
        assert_eq!(v["outbound"]["allowed_clients"][0].as_str(), Some("127.0.0.1/32"));
        assert_eq!(v["outbound"]["roots"][0].as_str(), Some("/lab/certs/ca.crt"));
        assert_eq!(v["dlp"]["policies"].as_str(), Some("/lab/policies"));
        assert!(v.get("rule").is_none(), "the lab uses the shipped DLP rule set");
        assert_eq!(v["discovery"]["enabled"].as_bool(), Some(false));
        assert_eq!(v["policy"]["deny_servers"][0].as_str(), Some("127.0.0.2:8448"));
    }

    #[test]
    fn synapse_proxy_config_has_secret_and_no_ca() {
        let text = guard_toml(&cfg(GuardOutbound::SynapseProxy {
            listen: "127.0.0.1:5".parse().unwrap(),
            secret: "s3cret".into(),
        }));
        let v: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(v["outbound"]["proxy_listen"].as_str(), Some("127.0.0.1:5"));
        assert_eq!(v["outbound"]["proxy_secret"].as_str(), Some("s3cret"));
        assert!(v["outbound"].get("connect_listen").is_none());
        assert!(v["outbound"].get("interception_ca_dir").is_none());
    }
}
