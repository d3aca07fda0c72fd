//! The split-appliance lab (`lab up --split LOSS`): the guard as two halves
//! (`grenzwacht serve --half high|low`) joined by two one-way UDP links with RaptorQ FEC, each
//! through a lossy relay (`grenzwacht hw relay`) that drops datagrams at random.
//!
//! ```text
//! hs1 ──proxy──▶ HIGH ──udp──▶ relay (loss) ──▶ LOW ──TLS──▶ hs2
//! hs1 ◀──http── HIGH ◀──udp── relay (loss) ◀── LOW ◀──TLS── hs2
//! ```
//!
//! Both halves' configs are derived from the single-guard lab config: HIGH keeps hs1's signing
//! key, upstream and admin API and loses `[inbound]`; LOW keeps `[inbound]` (hs1's public
//! address and certificate) and the outbound routes, and loses hs1's keys, upstream and admin
//! API, and the outbound listeners. Neither is hs1's notary (a split appliance has none).
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml_edit::{value, DocumentMut, Item, Table};

use super::LabError;

/// The split lab in `lab.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SplitInfo {
    /// Datagram loss of each relay, in parts per million.
    pub loss_ppm: u32,
    /// The HIGH half's admin listener (`lab.json` `guard.admin_url` is the same).
    pub high_admin_url: String,
    /// The LOW half's admin listener.
    pub low_admin_url: String,
    pub high_config: PathBuf,
    pub low_config: PathBuf,
    pub high_log: PathBuf,
    pub low_log: PathBuf,
    /// The LOW half's audit log (the HIGH half's is `guard.audit_dir`).
    pub low_audit_dir: PathBuf,
    /// Counts of the relays (`relayed N dropped M`): HIGH → LOW, then LOW → HIGH.
    pub relay_stats: [PathBuf; 2],
    /// The relays' logs.
    pub relay_logs: [PathBuf; 2],
    /// `(listen, to)` of the relays: HIGH → LOW, then LOW → HIGH.
    pub relays: [(SocketAddr, SocketAddr); 2],
}

/// Ports of the split lab.
pub struct SplitPorts {
    pub low_admin: u16,
    pub high_receive: u16,
    pub low_receive: u16,
    pub relay_to_low: u16,
    pub relay_to_high: u16,
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn split_table(half: &str, send: u16, receive: u16) -> Table {
    let mut t = Table::new();
    t["half"] = value(half);
    t["request_timeout_ms"] = value(30_000);
    t["heartbeat_ms"] = value(500);
    for (key, port) in [("send", send), ("receive", receive)] {
        let mut e = Table::new();
        e["kind"] = value("udp");
        e["address"] = value(loopback(port).to_string());
        e["mtu"] = value(1500);
        e["repair_percent"] = value(10);
        t[key] = Item::Table(e);
    }
    t
}

fn set_path(doc: &mut DocumentMut, table: &str, key: &str, v: &Path) {
    doc[table][key] = value(v.display().to_string());
}

/// The two halves' configs from the single-guard lab config `guard_toml`.
pub fn halves(
    guard_toml: &str,
    dir: &Path,
    ports: &SplitPorts,
) -> Result<(String, String), LabError> {
    let base: DocumentMut = guard_toml
        .parse()
        .map_err(|e| LabError::Setup(format!("lab guard config: {e}")))?;

    let mut high = base.clone();
    high.remove("inbound");
    if let Some(k) = high["keys"].as_table_mut() {
        // HIGH holds only the HIGH side's keys; the guard key attests LOW servers' keys.
        k.remove("guard_key");
        k.remove("notary_name");
    }
    set_path(&mut high, "store", "path", &dir.join("grenzwacht-high.db"));
    set_path(&mut high, "audit", "dir", &dir.join("audit-high"));
    high["split"] = Item::Table(split_table("high", ports.relay_to_low, ports.high_receive));

    let mut low = base;
    if let Some(p) = low["protected"]
        .as_array_of_tables_mut()
        .and_then(|a| a.get_mut(0))
    {
        for key in ["upstream", "signing_key", "admin_api", "admin_token_file"] {
            p.remove(key);
        }
    }
    if let Some(o) = low["outbound"].as_table_mut() {
        for key in [
            "connect_listen",
            "proxy_listen",
            "proxy_secret",
            "interception_ca_dir",
            "allowed_clients",
        ] {
            o.remove(key);
        }
    }
    if let Some(k) = low["keys"].as_table_mut() {
        k.remove("notary_name");
    }
    low["admin"]["listen"] = value(loopback(ports.low_admin).to_string());
    set_path(&mut low, "store", "path", &dir.join("grenzwacht-low.db"));
    set_path(&mut low, "audit", "dir", &dir.join("audit-low"));
    low["split"] = Item::Table(split_table("low", ports.relay_to_high, ports.low_receive));
    Ok((high.to_string(), low.to_string()))
}

/// The lab.json part of the split lab.
pub fn info(dir: &Path, loss: f64, high_admin: u16, ports: &SplitPorts) -> SplitInfo {
    SplitInfo {
        loss_ppm: (loss * 1e6).round() as u32,
        high_admin_url: format!("http://127.0.0.1:{high_admin}"),
        low_admin_url: format!("http://127.0.0.1:{}", ports.low_admin),
        high_config: dir.join("guard-high.toml"),
        low_config: dir.join("guard-low.toml"),
        high_log: dir.join("guard-high.log"),
        low_log: dir.join("guard-low.log"),
        low_audit_dir: dir.join("audit-low"),
        relay_stats: [
            dir.join("relay-high-low.stats"),
            dir.join("relay-low-high.stats"),
        ],
        relay_logs: [
            dir.join("relay-high-low.log"),
            dir.join("relay-low-high.log"),
        ],
        relays: [
            (loopback(ports.relay_to_low), loopback(ports.low_receive)),
            (loopback(ports.relay_to_high), loopback(ports.high_receive)),
        ],
    }
}

/// `(name, argv, log)` of the processes of the split lab besides the homeservers, in start
/// order: the relays, LOW, HIGH.
pub fn processes(guard_bin: &Path, s: &SplitInfo) -> Vec<(String, Vec<String>, PathBuf)> {
    let bin = guard_bin.display().to_string();
    let mut out = Vec::new();
    for (i, name) in ["relay-high-low", "relay-low-high"].iter().enumerate() {
        let (listen, to) = s.relays[i];
        out.push((
            name.to_string(),
            vec![
                bin.clone(),
                "hw".into(),
                "relay".into(),
                "--listen".into(),
                listen.to_string(),
                "--to".into(),
                to.to_string(),
                "--loss".into(),
                (f64::from(s.loss_ppm) / 1e6).to_string(),
                "--seed".into(),
                (i + 1).to_string(),
                "--stats".into(),
                s.relay_stats[i].display().to_string(),
            ],
            s.relay_logs[i].clone(),
        ));
    }
    for (name, half, config, log) in [
        ("guard-low", "low", &s.low_config, &s.low_log),
        ("guard", "high", &s.high_config, &s.high_log),
    ] {
        out.push((
            name.to_string(),
            vec![
                bin.clone(),
                "serve".into(),
                "--half".into(),
                half.into(),
                "--config".into(),
                config.display().to_string(),
            ],
            log.clone(),
        ));
    }
    out
}

/// `(relayed, dropped)` of a relay's stats file.
pub fn relay_counts(path: &Path) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut it = text.split_whitespace();
    match (it.next(), it.next(), it.next(), it.next()) {
        (Some("relayed"), Some(r), Some("dropped"), Some(d)) => {
            Some((r.parse().ok()?, d.parse().ok()?))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::split::HalfName;

    #[test]
    fn derived_halves_parse_and_keep_keys_apart() {
        let dir = tempfile::tempdir().unwrap();
        let base = r#"
[admin]
listen = "127.0.0.1:9000"
[inbound]
listen = "127.0.0.1:9001"
[[protected]]
server_name = "127.0.0.1:9001"
cert = "c.pem"
key = "k.pem"
upstream = "http://127.0.0.1:9002"
signing_key = "hs1.key"
admin_api = "http://127.0.0.1:9003"
admin_token_file = "t"
[outbound]
proxy_listen = "127.0.0.1:9004"
proxy_secret = "s"
allowed_clients = ["127.0.0.1/32"]
[keys]
guard_key = "g.key"
notary_name = "gw.lab"
[store]
path = "x.db"
[audit]
dir = "audit"
key_file = "a.key"
"#;
        let ports = SplitPorts {
            low_admin: 9100,
            high_receive: 9101,
            low_receive: 9102,
            relay_to_low: 9103,
            relay_to_high: 9104,
        };
        let (high, low) = halves(base, dir.path(), &ports).unwrap();
        let hc = crate::config::Config::from_str(&high, dir.path().join("h.toml")).unwrap();
        let lc = crate::config::Config::from_str(&low, dir.path().join("l.toml")).unwrap();
        assert_eq!(hc.split.as_ref().unwrap().half, HalfName::High);
        assert_eq!(lc.split.as_ref().unwrap().half, HalfName::Low);
        assert!(hc.inbound.is_none());
        assert!(hc.protected[0].signing_key.is_some());
        assert!(hc.keys.guard_key.is_none());
        assert!(lc.protected[0].signing_key.is_none());
        assert!(lc.protected[0].upstream.is_empty());
        assert!(lc.keys.guard_key.is_some());
        assert!(lc.outbound.as_ref().unwrap().proxy_listen.is_none());
        assert_ne!(hc.store.path, lc.store.path);
    }
}
