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
        /// The proxy secret hs1 sends as Basic credentials.
        secret: String,
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
    /// `[labels]`, when the lab runs with security labels.
    /// The protected homeserver's admin API (its client listener) and the file the lab
    /// writes an admin token to once it is up (room label lookups).
    pub admin_api: String,
    pub admin_token_file: PathBuf,
    pub labels: Option<LabLabels>,
    /// `[[admin.principal]]`: (name, role, token file) of the admin API's users
    /// ([`LAB_PRINCIPALS`]); with labels they are cleared like the protected side.
    pub principals: Vec<(String, String, PathBuf)>,
    /// `[notices]` on (English texts).
    pub notices: bool,
    /// `[media] allow_unscanned = true` (UNSAFE; harness checks only).
    pub media_allow_unscanned: bool,
    /// `[audit] dir`.
    pub audit_dir: PathBuf,
    /// `[audit] key_file`.
    pub audit_key: PathBuf,
    /// The TI-Messenger profile (`[ti]`), if on.
    pub ti: Option<super::ti::LabTi>,
}

/// The lab's admin API principals (name, role): two reviewers (four-eyes), an auditor, an
/// admin. Their tokens are in `DIR/admin-tokens/NAME.token`, named in `lab.json`.
pub const LAB_PRINCIPALS: &[(&str, &str)] = &[
    ("lab-reviewer", "reviewer"),
    ("lab-reviewer2", "reviewer"),
    ("lab-auditor", "auditor"),
    ("lab-admin", "admin"),
];

/// The lab's security labels (`LabOptions::labels`): the shipped SPIFs, hs1's side under
/// DEU-VS, hs2's side under NATO.
///
/// * protected side (hs1): policy DEU-VS, unlabeled = VS-NfD, cleared for everything
///   (OFFEN … STRENG GEHEIM, all release and additional categories);
/// * remote side: policy NATO, unlabeled = NATO RESTRICTED (NATO context), cleared for NATO
///   UNCLASSIFIED and RESTRICTED, releasable to DEU, NATO context — i.e. hs2 is cleared for
///   VS-NfD, released to Germany; `[[labels.peer]]` names hs2 with that clearance.
/// * hs3 (three-server lab): `[[labels.peer]]` with NATO UNCLASSIFIED only (same categories)
///   — cleared for OFFEN, not for VS-NfD. A room shared with hs2 and hs3 is released at hs3's
///   clearance.
#[derive(Debug, Clone)]
pub struct LabLabels {
    /// `DIR/spif/deu-vs.xml`, `DIR/spif/nato.xml`.
    pub spifs: Vec<PathBuf>,
    /// hs2's server name.
    pub remote_server: String,
    /// hs3's server name (three-server lab).
    pub third_server: Option<String>,
}

/// DEU-VS policy OID of the shipped SPIF.
pub const LAB_DEU_POLICY: &str = "1.3.6.1.4.1.99999.1.1";
/// NATO policy OID of the shipped SPIF.
pub const LAB_NATO_POLICY: &str = "1.3.26.1.3.1";

/// Writes the shipped SPIFs (embedded in the binary) to `DIR/spif/`.
pub fn write_lab_spifs(
    dir: &std::path::Path,
    remote_server: &str,
) -> Result<LabLabels, super::LabError> {
    let d = dir.join("spif");
    super::mkdir(&d)?;
    let deu = d.join("deu-vs.xml");
    let nato = d.join("nato.xml");
    super::write_file(&deu, include_str!("../../spif/deu-vs.xml").as_bytes())?;
    super::write_file(&nato, include_str!("../../spif/nato.xml").as_bytes())?;
    Ok(LabLabels {
        spifs: vec![deu, nato],
        remote_server: remote_server.to_string(),
        third_server: None,
    })
}

fn toml_of(v: &serde_json::Value) -> toml_edit::Value {
    match v {
        serde_json::Value::Bool(b) => (*b).into(),
        serde_json::Value::Number(n) => n
            .as_i64()
            .map(toml_edit::Value::from)
            .unwrap_or_else(|| n.to_string().into()),
        serde_json::Value::String(s) => s.as_str().into(),
        serde_json::Value::Array(a) => toml_edit::Value::Array(a.iter().map(toml_of).collect()),
        serde_json::Value::Object(o) => {
            let mut t = toml_edit::InlineTable::new();
            for (k, x) in o {
                t.insert(k, toml_of(x));
            }
            toml_edit::Value::InlineTable(t)
        }
        serde_json::Value::Null => "".into(),
    }
}

/// The `[labels]` table of the lab.
/// The protected side's clearance under DEU-VS: every classification and category.
fn deu_clearance() -> serde_json::Value {
    use serde_json::json;
    let deu_cats: Vec<serde_json::Value> = [276u64, 250, 840, 1001, 2000]
        .iter()
        .map(|v| json!({"tag_set": format!("{LAB_DEU_POLICY}.1"), "type": "permissive", "lacv": v}))
        .chain([2u64, 10].iter().map(
            |v| json!({"tag_set": format!("{LAB_DEU_POLICY}.2"), "type": "restrictive", "lacv": v}),
        ))
        .collect();
    json!({"policy": LAB_DEU_POLICY, "classifications": [1, 2, 3, 4, 5], "categories": deu_cats})
}

pub fn labels_table(l: &LabLabels) -> (Table, ArrayOfTables) {
    use serde_json::json;
    let nato_clearance_for = |classifications: &[u64]| {
        json!({"policy": LAB_NATO_POLICY, "classifications": classifications, "categories": [
        {"tag_set": "1.3.26.1.4.2", "type": "enumeratedPermissive", "lacv": 276},
        {"tag_set": "1.3.26.1.4.4", "type": "permissive", "lacv": 1001}]})
    };
    let nato_clearance = nato_clearance_for(&[1, 2]);
    let mut t = Table::new();
    t["spifs"] = value(str_array(l.spifs.iter().map(|p| p.display().to_string())));
    let mut prot = Table::new();
    prot["policy"] = value(LAB_DEU_POLICY);
    prot["default_label"] = value(toml_of(
        &json!({"policy": LAB_DEU_POLICY, "classification": 2}),
    ));
    prot["clearance"] = value(toml_of(&deu_clearance()));
    t["protected"] = Item::Table(prot);
    let mut remote = Table::new();
    remote["policy"] = value(LAB_NATO_POLICY);
    remote["default_label"] = value(toml_of(
        &json!({"policy": LAB_NATO_POLICY, "classification": 2, "categories": [{"tag_set": "1.3.26.1.4.4", "type": "permissive", "lacv": 1001}]}),
    ));
    remote["clearance"] = value(toml_of(&nato_clearance));
    t["remote"] = Item::Table(remote);
    let mut peer = Table::new();
    peer["server"] = value(l.remote_server.clone());
    peer["clearance"] = value(toml_of(&nato_clearance));
    let mut peers = ArrayOfTables::new();
    peers.push(peer);
    if let Some(third) = &l.third_server {
        let mut peer = Table::new();
        peer["server"] = value(third.clone());
        peer["clearance"] = value(toml_of(&nato_clearance_for(&[1])));
        peers.push(peer);
    }
    (t, peers)
}

/// The shipped DLP rule set (`policies/`), built into the binary so the lab runs from any
/// directory: (file name relative to `policies/`, content; a name may have a directory,
/// e.g. `yara/…`).
pub const SHIPPED_POLICIES: &[(&str, &str)] = &[
    (
        "markings.toml",
        include_str!("../../policies/markings.toml"),
    ),
    ("pii.toml", include_str!("../../policies/pii.toml")),
    ("secrets.toml", include_str!("../../policies/secrets.toml")),
    (
        "yara/documents.yar",
        include_str!("../../policies/yara/documents.yar"),
    ),
    (
        "yara/eicar.yar",
        include_str!("../../policies/yara/eicar.yar"),
    ),
    (
        "yara/executables.yar",
        include_str!("../../policies/yara/executables.yar"),
    ),
    (
        "yara/office_macros.yar",
        include_str!("../../policies/yara/office_macros.yar"),
    ),
    (
        "yara/scripts.yar",
        include_str!("../../policies/yara/scripts.yar"),
    ),
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
    let mut principals = ArrayOfTables::new();
    for (name, role, token_file) in &c.principals {
        let mut p = Table::new();
        p["name"] = value(name.clone());
        p["role"] = value(role.clone());
        p["token_file"] = value(token_file.display().to_string());
        if c.labels.is_some() {
            p["clearance"] = value(toml_of(&deu_clearance()));
        }
        principals.push(p);
    }
    if !principals.is_empty() {
        admin["principal"] = Item::ArrayOfTables(principals);
    }
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
    prot["admin_api"] = value(c.admin_api.clone());
    prot["admin_token_file"] = value(c.admin_token_file.display().to_string());
    let mut protected = ArrayOfTables::new();
    protected.push(prot);
    doc["protected"] = Item::ArrayOfTables(protected);

    let mut out = Table::new();
    match &c.outbound {
        GuardOutbound::Connect {
            listen,
            ca_dir,
            secret,
        } => {
            out["connect_listen"] = value(listen.to_string());
            out["interception_ca_dir"] = value(ca_dir.display().to_string());
            out["proxy_secret"] = value(secret.clone());
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
    // The lab's servers are IP literals on loopback, which the guard refuses by default.
    disc["allow_destinations"] = value(str_array(["127.0.0.0/8".to_string()]));
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
    if let Some(l) = &c.labels {
        let (mut t, peers) = labels_table(l);
        t["peer"] = Item::ArrayOfTables(peers);
        doc["labels"] = Item::Table(t);
    }
    // Opaque content (ciphertext, encrypted attachments): the product default "deny"; with
    // labels, released by a cleartext label next to it.
    let mut opaque = Table::new();
    opaque["release"] = value(if c.labels.is_some() {
        "labeled"
    } else {
        "deny"
    });
    doc["opaque"] = Item::Table(opaque);
    let mut audit = Table::new();
    audit["dir"] = value(c.audit_dir.display().to_string());
    audit["key_file"] = value(c.audit_key.display().to_string());
    // The lab keeps full content in its decision records: `policy replay --audit` then judges
    // a lab session again under a changed rule set (a deployment decides this for itself).
    audit["store_content"] = value(true);
    doc["audit"] = Item::Table(audit);
    if c.notices {
        let mut notices = Table::new();
        notices["enabled"] = value(true);
        notices["language"] = value("en");
        doc["notices"] = Item::Table(notices);
    }
    if let Some(t) = &c.ti {
        doc["ti"] = Item::Table(super::ti::ti_table(t));
    }
    if c.media_allow_unscanned {
        let mut media = Table::new();
        media["allow_unscanned"] = value(true);
        doc["media"] = Item::Table(media);
    }
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
            admin_api: "http://127.0.0.1:4".into(),
            admin_token_file: "/lab/hs1.admin-token".into(),
            principals: vec![(
                "lab-reviewer".into(),
                "reviewer".into(),
                "/lab/admin-tokens/lab-reviewer.token".into(),
            )],
            outbound,
            roots: vec!["/lab/certs/ca.crt".into()],
            deny_servers: vec!["127.0.0.2:8448".into()],
            notices: false,
            media_allow_unscanned: false,
            audit_dir: "/lab/audit".into(),
            audit_key: "/lab/audit.key".into(),
            ti: None,
            guard_key: "/lab/guard.signing.key".into(),
            store: "/lab/grenzwacht.db".into(),
            policies: "/lab/policies".into(),
            labels: None,
        }
    }

    /// The lab's `[labels]` section parses with the config schema and builds the label layer
    /// from the shipped SPIFs; without the option there is no section.
    #[test]
    fn labels_section_loads_with_the_shipped_spifs() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(GuardOutbound::Connect {
            listen: "127.0.0.1:4".parse().unwrap(),
            ca_dir: "/lab/interception-ca".into(),
            secret: "s3cret".into(),
        });
        assert!(!guard_toml(&c).contains("[labels"));
        c.labels = Some(write_lab_spifs(dir.path(), "127.0.0.1:9").unwrap());
        let text = guard_toml(&c);
        let cfg = crate::config::Config::from_str(&text, dir.path().join("guard.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        let l = cfg.labels.as_ref().expect("labels");
        assert_eq!(l.peer[0].server, "127.0.0.1:9");
        let reviewer = &cfg.admin.principal[0];
        assert_eq!(reviewer.name, "lab-reviewer");
        assert!(
            reviewer.clearance.is_some(),
            "with labels the lab's principals are cleared like the protected side"
        );
        assert_eq!(
            cfg.opaque.release,
            crate::config::opaque::OpaqueRelease::Labeled,
            "labels lab: ciphertext released by its label"
        );
        let store = crate::store::Store::open_in_memory().unwrap();
        let p = crate::policy::labels::LabelPolicy::from_config(&cfg, store)
            .unwrap()
            .expect("layer");
        assert_eq!(p.spifs().policies().len(), 2);
        let clearance =
            crate::spif::Clearance::from_json(cfg.admin.principal[0].clearance.as_ref().unwrap())
                .unwrap();
        assert!(
            p.spifs().clearance_marking(&clearance, None).is_ok(),
            "the lab principals' clearance resolves against the lab SPIFs"
        );
    }

    #[test]
    fn connect_config_parses_back_with_the_schema_keys() {
        let text = guard_toml(&cfg(GuardOutbound::Connect {
            listen: "127.0.0.1:4".parse().unwrap(),
            ca_dir: "/lab/interception-ca".into(),
            secret: "c0nnect".into(),
        }));
        let v: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(v["admin"]["listen"].as_str(), Some("127.0.0.1:1"));
        assert_eq!(v["inbound"]["listen"].as_str(), Some("127.0.0.1:2"));
        let p = &v["protected"].as_array().unwrap()[0];
        assert_eq!(p["server_name"].as_str(), Some("127.0.0.1:2"));
        assert_eq!(p["cert"].as_str(), Some("/lab/certs/hs1 \"front\".crt"));
        assert_eq!(p["upstream"].as_str(), Some("http://127.0.0.1:3"));
        assert_eq!(
            v["outbound"]["connect_listen"].as_str(),
            Some("127.0.0.1:4")
        );
        assert_eq!(
            v["outbound"]["proxy_secret"].as_str(),
            Some("c0nnect"),
            "CONNECT clients authenticate"
        );
        assert_eq!(
            v["outbound"]["interception_ca_dir"].as_str(),
            Some("/lab/interception-ca")
        );
        assert!(v["outbound"].get("proxy_listen").is_none());
        assert_eq!(
            v["outbound"]["allowed_clients"][0].as_str(),
            Some("127.0.0.1/32")
        );
        assert_eq!(
            v["outbound"]["roots"][0].as_str(),
            Some("/lab/certs/ca.crt")
        );
        assert_eq!(v["dlp"]["policies"].as_str(), Some("/lab/policies"));
        assert!(
            v.get("rule").is_none(),
            "the lab uses the shipped DLP rule set"
        );
        assert_eq!(v["discovery"]["enabled"].as_bool(), Some(false));
        assert_eq!(
            v["policy"]["deny_servers"][0].as_str(),
            Some("127.0.0.2:8448")
        );
        assert_eq!(
            v["opaque"]["release"].as_str(),
            Some("deny"),
            "plain lab: the product default, shown explicitly"
        );
    }

    /// The harness switch writes `[media] allow_unscanned = true`, which the schema accepts;
    /// without it the lab keeps the default (media inspected).
    #[test]
    fn media_allow_unscanned_only_when_asked() {
        let mut c = cfg(GuardOutbound::SynapseProxy {
            listen: "127.0.0.1:5".parse().unwrap(),
            secret: "s3cret".into(),
        });
        let text = guard_toml(&c);
        assert!(!text.contains("[media]"), "{text}");
        assert!(
            !crate::config::Config::from_str(&text, "g.toml")
                .unwrap_or_else(|e| panic!("{e}"))
                .media
                .allow_unscanned
        );
        c.media_allow_unscanned = true;
        let text = guard_toml(&c);
        let parsed = crate::config::Config::from_str(&text, "g.toml")
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(parsed.media.allow_unscanned);
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
