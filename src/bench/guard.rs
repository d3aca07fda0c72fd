//! The guard configurations the bench measures, and an in-process guard per run.
//!
//! * [`Setup::PassThrough`]: no verification, no content rules — the proxy path alone (TLS,
//!   parsing, policy seam, forwarding).
//! * [`Setup::DefaultUnaudited`]: the default below without the audit log: the baseline that
//!   shows what recording every decision (durably, before it crosses) adds.
//! * [`Setup::Default`]: what a deployment runs by default: inbound X-Matrix signatures and
//!   every PDU's signature and content hash verified (the guard fetches the origin's keys from
//!   the sink over its route table, verified TLS), the shipped DLP rule set (`policies/`, built
//!   into the binary as in the lab), a guard key, `[opaque] release = "deny"`, and the audit log
//!   (group commit, fsync) on the bench's temporary directory.
//! * [`Setup::Labels`] (`--labels`): the default plus security labels: the shipped SPIFs
//!   (`spif/`), the lab's two sides (protected DEU-VS, remote NATO; the origin cleared as the
//!   lab's remote peer), a room label event in the room and a label on every message.
//!
//! Each guard is loaded from its config file as `grenzwacht serve` loads it, with its own store
//! file (SQLite, WAL) in the bench's temporary directory.
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use toml_edit::{value, Array, ArrayOfTables, DocumentMut, Item, Table};

use super::BenchError;
use crate::config::Config;
use crate::proxy::{Guard, Listeners};

/// One guard configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Setup {
    /// No verification, no content rules.
    PassThrough,
    /// The default without the audit log.
    DefaultUnaudited,
    /// X-Matrix and PDU verification, the shipped DLP rule set, the audit log.
    Default,
    /// The default plus security labels.
    Labels,
}

impl Setup {
    pub fn name(self) -> &'static str {
        match self {
            Setup::PassThrough => "pass_through",
            Setup::DefaultUnaudited => "default_unaudited",
            Setup::Default => "default",
            Setup::Labels => "labels",
        }
    }

    /// Whether this configuration verifies signatures (X-Matrix and PDUs).
    pub fn verifies(self) -> bool {
        self != Setup::PassThrough
    }

    /// Whether this configuration records its decisions in an audit log.
    pub fn audits(self) -> bool {
        matches!(self, Setup::Default | Setup::Labels)
    }
}

/// What every configuration shares: the bench's PKI, the sink, the origin's route.
pub struct Env {
    pub dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    pub server_name: String,
    pub origin: String,
    /// The sink's plain listener (the guard's upstream).
    pub upstream: SocketAddr,
    /// The sink's TLS listener (where the origin's keys are fetched).
    pub origin_addr: SocketAddr,
    pub guard_key: PathBuf,
    /// The audit key (signs the audit logs' checkpoints).
    pub audit_key: PathBuf,
    pub policies: PathBuf,
    pub labels: Option<crate::lab::guard::LabLabels>,
}

impl Env {
    /// Writes the guard key, the shipped rule set and (with `labels`) the shipped SPIFs.
    #[allow(clippy::too_many_arguments)]
    pub fn write(
        dir: &Path,
        cert: PathBuf,
        key: PathBuf,
        ca: PathBuf,
        server_name: &str,
        origin: &str,
        upstream: SocketAddr,
        origin_addr: SocketAddr,
        labels: bool,
    ) -> Result<Env, BenchError> {
        let gk = crate::keys::SigningKey::generate("gwbench")
            .map_err(|e| BenchError::Setup(e.to_string()))?;
        let guard_key = dir.join("guard.signing.key");
        std::fs::write(&guard_key, gk.to_synapse_string())?;
        let ak = crate::keys::SigningKey::generate("auditbench")
            .map_err(|e| BenchError::Setup(e.to_string()))?;
        let audit_key = dir.join("audit.key");
        std::fs::write(&audit_key, ak.to_synapse_string())?;
        let policies = dir.join("policies");
        std::fs::create_dir_all(&policies)?;
        for (name, text) in crate::lab::guard::SHIPPED_POLICIES {
            // Names may have a directory (`yara/…`).
            let path = policies.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, text)?;
        }
        let labels = if labels {
            Some(
                crate::lab::guard::write_lab_spifs(dir, origin)
                    .map_err(|e| BenchError::Setup(e.to_string()))?,
            )
        } else {
            None
        };
        Ok(Env {
            dir: dir.to_path_buf(),
            cert,
            key,
            ca,
            server_name: server_name.to_string(),
            origin: origin.to_string(),
            upstream,
            origin_addr,
            guard_key,
            audit_key,
            policies,
            labels,
        })
    }

    /// The guard's config file for `setup`.
    pub fn toml(&self, setup: Setup) -> String {
        let mut doc = DocumentMut::new();
        let mut log = Table::new();
        log["level"] = value("warn");
        doc["log"] = Item::Table(log);
        let mut admin = Table::new();
        admin["listen"] = value("127.0.0.1:0");
        doc["admin"] = Item::Table(admin);
        let mut inbound = Table::new();
        inbound["listen"] = value("127.0.0.1:0");
        inbound["verify_signatures"] = value(setup.verifies());
        doc["inbound"] = Item::Table(inbound);
        let mut prot = Table::new();
        prot["server_name"] = value(self.server_name.clone());
        prot["cert"] = value(self.cert.display().to_string());
        prot["key"] = value(self.key.display().to_string());
        prot["upstream"] = value(format!("http://{}", self.upstream));
        let mut protected = ArrayOfTables::new();
        protected.push(prot);
        doc["protected"] = Item::ArrayOfTables(protected);
        // Key fetches go over the outbound path: the origin's route names the sink.
        let mut out = Table::new();
        out["proxy_listen"] = value("127.0.0.1:0");
        out["proxy_secret"] = value("bench");
        out["allowed_clients"] = value(str_array(["127.0.0.1/32".to_string()]));
        out["roots"] = value(str_array([self.ca.display().to_string()]));
        doc["outbound"] = Item::Table(out);
        let mut route = Table::new();
        route["server_name"] = value(self.origin.clone());
        route["address"] = value(self.origin_addr.to_string());
        route["tls_name"] = value("127.0.0.1");
        let mut routes = ArrayOfTables::new();
        routes.push(route);
        doc["route"] = Item::ArrayOfTables(routes);
        let mut disc = Table::new();
        disc["enabled"] = value(false);
        doc["discovery"] = Item::Table(disc);
        let mut keys = Table::new();
        keys["guard_key"] = value(self.guard_key.display().to_string());
        keys["verify_pdus"] = value(setup.verifies());
        doc["keys"] = Item::Table(keys);
        // A store file, as `serve` opens it (WAL): transaction decisions and room versions.
        let mut store = Table::new();
        store["path"] = value(
            self.dir
                .join(format!("store-{}.db", setup.name()))
                .display()
                .to_string(),
        );
        doc["store"] = Item::Table(store);
        if setup.audits() {
            let mut audit = Table::new();
            audit["dir"] = value(
                self.dir
                    .join(format!("audit-{}", setup.name()))
                    .display()
                    .to_string(),
            );
            audit["key_file"] = value(self.audit_key.display().to_string());
            doc["audit"] = Item::Table(audit);
        }
        if setup != Setup::PassThrough {
            let mut dlp = Table::new();
            dlp["policies"] = value(self.policies.display().to_string());
            doc["dlp"] = Item::Table(dlp);
        }
        if let (Setup::Labels, Some(l)) = (setup, &self.labels) {
            let (mut t, peers) = crate::lab::guard::labels_table(l);
            t["peer"] = Item::ArrayOfTables(peers);
            doc["labels"] = Item::Table(t);
        }
        doc.to_string()
    }
}

fn str_array<I: IntoIterator<Item = String>>(items: I) -> Array {
    let mut a = Array::new();
    for i in items {
        a.push(i);
    }
    a
}

/// An in-process guard serving one configuration.
pub struct Running {
    pub addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Writes the config for `setup`, loads it as `grenzwacht serve` would and starts serving.
    pub async fn start(env: &Env, setup: Setup) -> Result<Running, BenchError> {
        let path = env.dir.join(format!("guard-{}.toml", setup.name()));
        std::fs::write(&path, env.toml(setup))?;
        let cfg = Config::load(&path).map_err(|e| BenchError::Setup(format!("config: {e}")))?;
        let store = crate::store::Store::open(&cfg.store.path)
            .map_err(|e| BenchError::Setup(e.to_string()))?;
        let mut guard =
            Guard::from_config(&cfg, store).map_err(|e| BenchError::Setup(e.to_string()))?;
        let auditor = match &cfg.audit {
            Some(a) => {
                let auditor = crate::audit::Auditor::open(a)
                    .map_err(|e| BenchError::Setup(format!("audit log: {e}")))?;
                guard.set_auditor(auditor.clone());
                Some(auditor)
            }
            None => None,
        };
        let guard = Arc::new(guard);
        let listeners = Listeners::bind(&cfg)
            .await
            .map_err(|e| BenchError::Setup(e.to_string()))?;
        let addr = listeners
            .inbound
            .as_ref()
            .ok_or_else(|| BenchError::Setup("no inbound listener".into()))?
            .local_addr()?;
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(async move {
            crate::proxy::serve(guard, listeners, async move {
                let _ = rx.await;
            })
            .await;
            if let Some(a) = auditor {
                let _ = a.close().await;
            }
        });
        Ok(Running {
            addr,
            stop,
            serving,
        })
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.serving.await;
    }
}

/// The guard's counters the bench reports, per label value (from the process-global
/// Prometheus recorder every in-process guard writes to).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    /// `grenzwacht_pdu_checks_total` by outcome (`verified`, `bad_signature`, …).
    pub pdu_checks: BTreeMap<String, u64>,
    /// `grenzwacht_refusals_total` by reason.
    pub refusals: BTreeMap<String, u64>,
    /// `grenzwacht_label_decisions_total` by outcome (`allow` or a `label:*` rule).
    pub label_decisions: BTreeMap<String, u64>,
    /// `grenzwacht_dlp_decisions_total` by action.
    pub dlp_decisions: BTreeMap<String, u64>,
}

const COUNTED: [(&str, &str); 4] = [
    (crate::telemetry::PDU_CHECKS_TOTAL, "outcome"),
    (crate::telemetry::REFUSALS_TOTAL, "reason"),
    (crate::policy::labels::LABEL_DECISIONS_TOTAL, "outcome"),
    (crate::policy::dlp::layer::DLP_DECISIONS_TOTAL, "action"),
];

impl Counts {
    /// The counters now.
    pub fn now() -> Counts {
        let text = crate::telemetry::metrics_handle().render();
        let mut c = Counts::default();
        for s in crate::lab::metrics::parse(&text) {
            let Some(i) = COUNTED.iter().position(|(n, _)| *n == s.name) else {
                continue;
            };
            let map = c.map(i);
            *map.entry(s.label(COUNTED[i].1).to_string()).or_default() += s.value as u64;
        }
        c
    }

    fn get(&self, i: usize) -> &BTreeMap<String, u64> {
        match i {
            0 => &self.pdu_checks,
            1 => &self.refusals,
            2 => &self.label_decisions,
            _ => &self.dlp_decisions,
        }
    }

    fn map(&mut self, i: usize) -> &mut BTreeMap<String, u64> {
        match i {
            0 => &mut self.pdu_checks,
            1 => &mut self.refusals,
            2 => &mut self.label_decisions,
            _ => &mut self.dlp_decisions,
        }
    }

    /// What was counted since `before` (zero entries left out).
    pub fn since(&self, before: &Counts) -> Counts {
        let mut out = Counts::default();
        for i in 0..COUNTED.len() {
            let old = before.get(i);
            let d = out.map(i);
            for (k, v) in self.get(i) {
                let delta = v.saturating_sub(old.get(k).copied().unwrap_or(0));
                if delta > 0 {
                    d.insert(k.clone(), delta);
                }
            }
        }
        out
    }
}
