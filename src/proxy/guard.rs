//! The guard's runtime object (compiled from config) and `serve(listeners, shutdown)`.
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tracing::{error, info};

use super::ca::InterceptionCa;
use super::discovery::ServerResolver;
use super::tls;
use super::upstream::Upstream;
use crate::config::{Config, LimitsConfig, UnknownEndpoint};
use crate::federation::txn::TxnLimits;
use crate::keys::{RemoteKeys, SigningKey};
use crate::policy::dlp::layer::DlpPolicy;
use crate::policy::media::MediaPolicy;
use crate::policy::rules::{RuleError, Rules, RulesPolicy};
use crate::policy::{Layers, StaticPolicy};
use crate::store::Store;

mod reload;
pub use reload::{
    PolicyStatus, ReloadResult, POLICY_FILES_LOADED, POLICY_FINGERPRINT, POLICY_RELOADS_TOTAL,
    POLICY_RULES_LOADED, SETTLE_POLLS,
};

/// Errors while building the guard from a (validated) config.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("[ti]: {0}")]
    Ti(#[from] crate::ti::TiError),
    #[error("[[ti.homeserver]] client listener: {0}")]
    ClientApi(Box<super::client_api::ClientApiError>),
    #[error("[media]: {0}")]
    Media(#[from] crate::media::inspect::InspectorError),
    #[error("protected server {server}: {source}")]
    ProtectedTls {
        server: String,
        source: tls::TlsError,
    },
    #[error("protected server {server}: {source}")]
    Upstream {
        server: String,
        source: super::upstream::UpstreamError,
    },
    #[error("outbound TLS roots: {0}")]
    OutboundTls(tls::TlsError),
    #[error("interception CA: {0}")]
    Ca(#[from] super::ca::CaError),
    #[error("signing key {path}: {source}")]
    Key {
        path: std::path::PathBuf,
        source: crate::keys::KeyError,
    },
    #[error("content rules: {0}")]
    Rules(#[from] RuleError),
    #[error("DLP rule set {dir}:\n{diagnostics}")]
    Dlp {
        dir: std::path::PathBuf,
        diagnostics: crate::policy::dlp::Diagnostics,
    },
    #[error("YARA rule set {dir}:\n{diagnostics}")]
    Yara {
        dir: std::path::PathBuf,
        diagnostics: crate::media::yara::YaraDiagnostics,
    },
    #[error("DLP rule set {dir} refused, it lacks rules of the running one ({loss}); SIGUSR1 loads it anyway")]
    DlpShrink {
        dir: std::path::PathBuf,
        loss: Box<crate::policy::manifest::Loss>,
    },
    #[error("security labels: {0}")]
    Labels(#[from] crate::policy::labels::LabelConfigError),
    #[error("admin: {0}")]
    Admin(#[from] crate::admin::AdminError),
    #[error("outbound proxy secret: {0}")]
    Secret(String),
    #[error("discovery: {0}")]
    Discovery(String),
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A protected homeserver at runtime.
pub struct Protected {
    pub server_name: String,
    /// Lower-case host part (no port, no brackets): what SNI carries.
    pub host: String,
    pub upstream: Upstream,
    /// The homeserver's admin API and the file with its token (`admin_api`,
    /// `admin_token_file`), for room version and room label lookups.
    pub admin: Option<(Upstream, std::path::PathBuf)>,
}

/// Outbound runtime state.
pub struct Outbound {
    pub upstream: Upstream,
    pub allowed_clients: Vec<ipnet::IpNet>,
    pub secret: Option<String>,
    pub ica: Option<Arc<InterceptionCa>>,
}

/// The guard: everything a request needs, built once from config.
pub struct Guard {
    /// Verify inbound X-Matrix signatures (`[inbound] verify_signatures`).
    verify_inbound: bool,
    /// Verify PDUs entering the protected side (`[keys] verify_pdus`).
    verify_pdus: bool,
    /// The guard's notary name (`[keys] notary_name`), lower case.
    notary_name: Option<String>,
    /// Static allow/deny and the config's `[[rule]]` list (always the first layer).
    base: Arc<RulesPolicy>,
    /// The layered policy every exchange takes one snapshot of (swapped whole on reload).
    policy: std::sync::RwLock<Arc<Layers>>,
    /// `[dlp]`: the rule directory and its poll interval.
    dlp: Option<crate::config::DlpConfig>,
    /// The security-label layer (`[labels]`), kept across DLP reloads.
    labels: Option<Arc<crate::policy::labels::LabelPolicy>>,
    /// The running DLP rule set's manifest (serialises reloads: signals and the watcher).
    reloader: reload::Reloader,
    /// The compiled YARA rules of `<dlp policies>/yara/` (swapped with the policy on reload).
    yara: std::sync::RwLock<Option<Arc<crate::media::yara::YaraRules>>>,
    /// `[media]`: the media layer (blocked media in events; kept across DLP reloads).
    media: Arc<MediaPolicy>,
    /// Media inspection (`proxy::media`): the inspector, the verdict cache, redirects.
    media_gate: super::media::MediaGate,
    /// The opaque-content layer (`[opaque]`, always on), kept across DLP reloads.
    opaque: Arc<crate::policy::opaque::OpaquePolicy>,
    /// Principals and TLS of the admin listener (`[admin]`).
    pub(crate) admin_access: crate::admin::AdminAccess,
    /// Recent room label lookups at the protected homeservers (`proxy::room_labels`).
    label_lookups: super::room_labels::Lookups,
    /// Recent room version lookups without a version found (`proxy::rooms::lookup`).
    version_lookups: super::rooms::lookup::Lookups,
    store: Store,
    /// Paused rooms (`proxy::pause`), over `store`.
    pauses: super::pause::Pauses,
    /// Held events and the queues of rooms waiting behind them (`proxy::hold`).
    holds: super::hold::HoldQueue,
    /// Verified remote server keys (X-Matrix and PDU verification).
    remote_keys: RemoteKeys,
    /// Remote key objects as signed by their servers (restoring notary answers).
    key_originals: crate::keys::originals::KeyOriginals,
    /// The protected servers' own federation signing keys (re-signing outbound requests).
    protected_keys: std::collections::HashMap<String, SigningKey>,
    /// The guard's own fetches of remote signing keys (`/health` `keys`).
    key_fetches: Arc<super::upstream::Watch>,
    /// The guard key (attestation, re-signing inbound requests).
    guard_key: Option<SigningKey>,
    limits: LimitsConfig,
    /// Connection caps, timeouts and the budget of unauthenticated bodies (`[admission]`).
    admission: super::admission::Admission,
    unknown_forbidden: bool,
    protected: Vec<Protected>,
    pub(crate) outbound: Option<Outbound>,
    pub(crate) inbound_tls: Option<Arc<rustls::ServerConfig>>,
    /// Notices to protected senders (`[notices]`, `proxy::notices`).
    notifier: super::notices::Notifier,
    /// The audit log (`[audit]`; `serve` always has one, see `proxy::audit_trail`).
    auditor: Option<crate::audit::Auditor>,
    /// One `/send` in flight per (origin, destination) (`proxy::txn_slots`).
    txn_slots: super::txn_slots::TxnSlots,
    /// `[audit] dir`: what the admin API's audit search reads.
    audit_dir: Option<std::path::PathBuf>,
    /// `[ti]`: the TI-Messenger profile (`crate::ti`), if on.
    ti: Option<Arc<crate::ti::Ti>>,
    /// With `[labels]`: the DLP marking rules of the running rule set (the label layer's
    /// detector with `marking_detector = "dlp"`/`"both"`), swapped on reload.
    dlp_markings: Option<Arc<crate::policy::dlp::markings::DlpMarkings>>,
    /// `[split]`: this guard is one half of a split appliance (`crate::split`).
    split: Option<Arc<crate::split::Split>>,
}

impl Guard {
    /// Builds the guard. The store is passed in: `serve` opens the configured file, `check`
    /// and tests use an in-memory one (checking must not create files).
    pub fn from_config(cfg: &Config, store: Store) -> Result<Self, GuardError> {
        let ti = match &cfg.ti {
            Some(t) => Some(Arc::new(crate::ti::Ti::from_config(
                t,
                cfg.protected
                    .iter()
                    .map(|p| p.server_name.clone())
                    .collect(),
            )?)),
            None => None,
        };
        // The client-server listeners' upstream and TLS files: a start error, not a listener
        // that is not served.
        for h in cfg.ti.iter().flat_map(|t| &t.homeserver) {
            if h.client_listen.is_some() {
                super::client_api::Setup::from_homeserver(h)
                    .map_err(|e| GuardError::ClientApi(Box::new(e)))?;
            }
        }
        let l = &cfg.limits;
        let timeouts = super::upstream::Timeouts::from_config(cfg.outbound.as_ref());
        let split = cfg
            .split
            .as_ref()
            .map(|c| Arc::new(crate::split::Split::from_config(c)));
        // The other half, where requests cross the link: the protected servers seen from LOW,
        // the remote servers seen from HIGH.
        let link_upstream = |half: crate::split::Half| {
            split
                .as_ref()
                .filter(|s| s.half() == half)
                .map(|s| Upstream::over_link(s.link.clone(), l.max_response_body))
        };
        let mut protected = Vec::new();
        let mut keys = Vec::new();
        for p in &cfg.protected {
            // On the LOW half of a split appliance the protected server is behind the link.
            let low_half = link_upstream(crate::split::Half::Low);
            let on_link = low_half.is_some();
            // (A LOW half has no `upstream`: configuration refuses one there.)
            let upstream_tls = if p.upstream.starts_with("https://") {
                let roots: Vec<_> = p.upstream_ca.iter().cloned().collect();
                Some(
                    tls::client_config(&roots).map_err(|source| GuardError::ProtectedTls {
                        server: p.server_name.clone(),
                        source,
                    })?,
                )
            } else {
                None
            };
            let upstream = match low_half {
                Some(u) => u,
                None => Upstream::fixed(
                    "protected",
                    &p.upstream,
                    upstream_tls,
                    timeouts,
                    l.max_response_body,
                )
                .map_err(|source| GuardError::Upstream {
                    server: p.server_name.clone(),
                    source,
                })?,
            };
            if cfg.inbound.is_some() {
                let ck = tls::load_certified_key(&p.cert, &p.key).map_err(|source| {
                    GuardError::ProtectedTls {
                        server: p.server_name.clone(),
                        source,
                    }
                })?;
                keys.push((p.server_name.clone(), ck));
            }
            let admin = match (&p.admin_api, &p.admin_token_file) {
                (Some(url), Some(token)) if !on_link => {
                    let tls = if url.starts_with("https://") {
                        let roots: Vec<_> = p.upstream_ca.iter().cloned().collect();
                        Some(tls::client_config(&roots).map_err(|source| {
                            GuardError::ProtectedTls {
                                server: p.server_name.clone(),
                                source,
                            }
                        })?)
                    } else {
                        None
                    };
                    let up =
                        Upstream::fixed("protected_admin", url, tls, timeouts, l.max_response_body)
                            .map_err(|source| GuardError::Upstream {
                                server: p.server_name.clone(),
                                source,
                            })?;
                    Some((up, token.clone()))
                }
                _ => None,
            };
            protected.push(Protected {
                server_name: p.server_name.clone(),
                host: tls::host_part(&p.server_name).to_ascii_lowercase(),
                upstream,
                admin,
            });
        }
        let inbound_tls = if cfg.inbound.is_some() {
            Some(tls::server_config(Arc::new(
                tls::SniResolver::new(keys).map_err(|source| GuardError::ProtectedTls {
                    server: "(all)".into(),
                    source,
                })?,
            )))
        } else {
            None
        };
        let outbound = match &cfg.outbound {
            None => None,
            Some(o) => {
                let client_tls = tls::client_config(&o.roots).map_err(GuardError::OutboundTls)?;
                let resolver =
                    ServerResolver::from_parts(&cfg.routes, &cfg.discovery, client_tls.clone())
                        .map_err(|e| GuardError::Discovery(e.to_string()))?;
                let upstream = match link_upstream(crate::split::Half::High) {
                    Some(u) => u,
                    None => Upstream::federation(
                        client_tls,
                        Arc::new(resolver),
                        timeouts,
                        l.max_response_body,
                    ),
                };
                let ica = match (&o.connect_listen, &o.interception_ca_dir) {
                    (Some(_), Some(dir)) => Some(Arc::new(InterceptionCa::load(
                        dir,
                        Duration::from_secs(o.leaf_validity_secs),
                    )?)),
                    _ => None,
                };
                let secret = o.secret().map_err(|e| GuardError::Secret(e.to_string()))?;
                Some(Outbound {
                    upstream,
                    allowed_clients: o.allowed_clients.clone(),
                    secret,
                    ica,
                })
            }
        };
        let load_key = |path: &std::path::PathBuf| {
            SigningKey::from_synapse_file(path).map_err(|source| GuardError::Key {
                path: path.clone(),
                source,
            })
        };
        let mut protected_keys = std::collections::HashMap::new();
        for p in &cfg.protected {
            if let Some(path) = &p.signing_key {
                protected_keys.insert(p.server_name.to_ascii_lowercase(), load_key(path)?);
            }
        }
        let guard_key = cfg.keys.guard_key.as_ref().map(load_key).transpose()?;
        let base = Arc::new(RulesPolicy {
            base: StaticPolicy::from_config(&cfg.policy),
            rules: Rules::compile(&cfg.rules)?,
        });
        // The label layer's DLP marking detector reads the running rule set's marking rules.
        let dlp_markings = cfg
            .labels
            .as_ref()
            .map(|l| crate::policy::dlp::markings::DlpMarkings::new(&l.event_key));
        let labels = crate::policy::labels::LabelPolicy::from_config_with(
            cfg,
            store.clone(),
            cfg.dlp
                .as_ref()
                .and(dlp_markings.as_ref())
                .map(|m| m.detector()),
        )?;
        let (dlp_layer, yara, manifest) = match &cfg.dlp {
            Some(d) => {
                let marking_ctx = dlp_markings
                    .as_deref()
                    .zip(labels.as_ref().map(|l| l.spifs()));
                let l = reload::load_dlp(&d.policies, None, marking_ctx)?;
                reload::log_identity(&d.policies, &l.manifest, "loaded");
                if let (Some(m), Some(r)) = (&dlp_markings, l.markings) {
                    m.set(r);
                }
                (Some(Arc::new(l.dlp)), Some(l.yara), Some(l.manifest))
            }
            None => (None, None, None),
        };
        let admin_access =
            crate::admin::AdminAccess::from_config(&cfg.admin, labels.as_ref().map(|l| l.spifs()))?;
        let media = Arc::new(MediaPolicy::from_config(&cfg.media, store.clone()));
        let redirect_tls = match &cfg.outbound {
            Some(o) => Some(tls::client_config(&o.roots).map_err(GuardError::OutboundTls)?),
            None => None,
        };
        let media_gate = super::media::MediaGate::from_config(
            &cfg.media,
            redirect_tls,
            timeouts.connect,
            timeouts.total,
        )?;
        let opaque = crate::policy::opaque::layer(cfg);
        Ok(Guard {
            verify_inbound: cfg.inbound.as_ref().is_some_and(|i| i.verify_signatures),
            verify_pdus: cfg.keys.verify_pdus,
            notary_name: cfg
                .keys
                .notary_name
                .as_ref()
                .map(|n| n.to_ascii_lowercase()),
            pauses: super::pause::Pauses::new(store.clone()),
            holds: super::hold::HoldQueue::new(
                store.clone(),
                cfg.review.clone(),
                labels.as_ref().map(|l| l.spifs().clone()),
            ),
            store,
            remote_keys: RemoteKeys::new(),
            key_originals: Default::default(),
            protected_keys,
            key_fetches: super::upstream::Watch::new("key_fetch", timeouts.stuck_after()),
            guard_key,
            policy: std::sync::RwLock::new(Arc::new(reload::versioned(
                Self::with_frame(
                    split.is_some(),
                    Self::layers(
                        &base,
                        &media,
                        dlp_layer,
                        yara.as_ref(),
                        labels.clone(),
                        opaque.clone(),
                        ti.as_ref(),
                    ),
                ),
                manifest.as_ref(),
            ))),
            yara: std::sync::RwLock::new(yara),
            base,
            dlp: cfg.dlp.clone(),
            labels,
            dlp_markings,
            reloader: reload::Reloader::new(manifest.as_ref())
                .with_spifs(cfg.labels.as_ref().map_or(&[][..], |l| &l.spifs)),
            media,
            media_gate,
            opaque,
            admin_access,
            label_lookups: super::room_labels::Lookups::default(),
            version_lookups: super::rooms::lookup::Lookups::default(),
            limits: cfg.limits.clone(),
            admission: super::admission::Admission::new(&cfg.admission),
            unknown_forbidden: cfg.policy.unknown_endpoint == UnknownEndpoint::Forbidden,
            protected,
            outbound,
            inbound_tls,
            notifier: super::notices::Notifier::new(&cfg.notices),
            auditor: None,
            txn_slots: Default::default(),
            audit_dir: cfg.audit.as_ref().map(|a| a.dir.clone()),
            ti,
            split,
        })
    }

    /// On a half of a split appliance, the frame layer last (`policy::frame`).
    fn with_frame(split: bool, l: Layers) -> Layers {
        match split {
            true => l.with("frame", Arc::new(crate::policy::frame::FramePolicy)),
            false => l,
        }
    }

    /// `[split]`: this half of a split appliance.
    pub fn split(&self) -> Option<&Arc<crate::split::Split>> {
        self.split.as_ref()
    }

    /// Connects the audit log: every decision is recorded before it takes effect (also the
    /// hold queue's holds and review decisions).
    pub fn set_auditor(&mut self, auditor: crate::audit::Auditor) {
        self.holds()
            .set_journal(std::sync::Arc::new(super::audit_trail::AuditJournal(
                auditor.clone(),
            )));
        self.auditor = Some(auditor);
    }

    /// The TI-Messenger profile (`[ti]`), if on.
    pub fn ti(&self) -> Option<&Arc<crate::ti::Ti>> {
        self.ti.as_ref()
    }

    /// The audit log, if connected.
    pub fn auditor(&self) -> Option<&crate::audit::Auditor> {
        self.auditor.as_ref()
    }

    /// One `/send` in flight per (origin, destination) through the guard.
    pub fn txn_slots(&self) -> &super::txn_slots::TxnSlots {
        &self.txn_slots
    }

    /// Notices to protected senders (`proxy::notices`).
    pub fn notifier(&self) -> &super::notices::Notifier {
        &self.notifier
    }

    /// The signing key of a protected server (for re-signing its outbound requests).
    pub fn protected_key(&self, server_name: &str) -> Option<&SigningKey> {
        self.protected_keys.get(&server_name.to_ascii_lowercase())
    }
    /// The guard key (attestation; re-signing inbound requests).
    pub fn guard_key(&self) -> Option<&SigningKey> {
        self.guard_key.as_ref()
    }

    /// Whether inbound X-Matrix signatures are verified by the guard.
    /// The notary name if `destination` is it (the guard answers key queries to it itself).
    pub fn notary_for(&self, destination: &str) -> Option<&str> {
        self.notary_name
            .as_deref()
            .filter(|n| n.eq_ignore_ascii_case(destination))
    }
    /// The security-label layer, if `[labels]` is configured.
    pub fn labels(&self) -> Option<&Arc<crate::policy::labels::LabelPolicy>> {
        self.labels.as_ref()
    }
    /// The protected server named `server_name`.
    pub fn protected_named(&self, server_name: &str) -> Option<&Protected> {
        self.protected
            .iter()
            .find(|p| p.server_name.eq_ignore_ascii_case(server_name))
    }
    /// Rooms whose label the protected homeserver was asked for recently without result.
    pub fn label_lookups(&self) -> &super::room_labels::Lookups {
        &self.label_lookups
    }
    pub fn version_lookups(&self) -> &super::rooms::lookup::Lookups {
        &self.version_lookups
    }
    pub fn verify_pdus(&self) -> bool {
        self.verify_pdus
    }
    pub fn verify_inbound(&self) -> bool {
        self.verify_inbound
    }

    /// Verified remote server keys.
    pub fn remote_keys(&self) -> &RemoteKeys {
        &self.remote_keys
    }

    /// Remote key objects as their servers signed them (`keys::originals`).
    pub fn key_originals(&self) -> &crate::keys::originals::KeyOriginals {
        &self.key_originals
    }

    /// The paused rooms.
    pub fn pauses(&self) -> &super::pause::Pauses {
        &self.pauses
    }

    /// The hold queue (held events, waiting rooms, reviews; `proxy::hold`).
    pub fn holds(&self) -> &super::hold::HoldQueue {
        &self.holds
    }

    /// The embedded store (room versions, transaction decisions).
    /// Media inspection (`proxy::media`).
    pub fn media(&self) -> &super::media::MediaGate {
        &self.media_gate
    }
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The current policy: one snapshot, to be used for a whole exchange.
    pub fn policy(&self) -> Arc<Layers> {
        self.policy
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
    /// Replaces the policy atomically (running exchanges keep their snapshot).
    pub fn swap_policy(&self, layers: Layers) {
        *self
            .policy
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(layers);
    }

    /// The compiled YARA rules (`<dlp policies>/yara/*.yar`) for media inspection; `None`
    /// without `[dlp]` or without any YARA rule. Take it once per file (a reload swaps it).
    pub fn yara_rules(&self) -> Option<Arc<crate::media::yara::YaraRules>> {
        self.yara
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .filter(|r| r.rule_count() > 0)
    }
    fn set_yara_rules(&self, rules: Arc<crate::media::yara::YaraRules>) {
        *self
            .yara
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(rules);
    }

    /// The layers in order: static allow/deny + config rules, media, the DLP rule set, the
    /// YARA `text` rules, security labels, opaque content.
    fn layers(
        base: &Arc<RulesPolicy>,
        media: &Arc<MediaPolicy>,
        dlp: Option<Arc<DlpPolicy>>,
        yara: Option<&Arc<crate::media::yara::YaraRules>>,
        labels: Option<Arc<crate::policy::labels::LabelPolicy>>,
        opaque: Arc<crate::policy::opaque::OpaquePolicy>,
        ti: Option<&Arc<crate::ti::Ti>>,
    ) -> Layers {
        use crate::policy::yara_text::{TextMatcher, YaraTextPolicy};
        let mut l = Layers::new()
            .with("config", base.clone())
            .with("media", media.clone());
        // Media inspection uses the DLP engine and YARA rules of the same load.
        l = l.with_attachment(Arc::new(crate::media::Scanners {
            dlp: dlp.as_ref().map(|d| d.engine().clone()),
            yara: yara.cloned(),
        }));
        if let Some(d) = dlp {
            l = l.with("dlp", d);
        }
        if let Some(y) = yara.filter(|y| !y.text_rules().is_empty()) {
            let matcher: Arc<dyn TextMatcher> = y.clone();
            l = l.with("yara", Arc::new(YaraTextPolicy::new(matcher)));
        }
        if let Some(x) = labels {
            l = l.with("labels", x);
        }
        l = l.with("opaque", opaque);
        // TI-Messenger profile: EDUs naming users of servers off the federation list.
        if let Some(t) = ti {
            l = l.with(
                "ti",
                Arc::new(crate::policy::ti_edu::TiEduPolicy::new(t.clone())),
            );
        }
        l
    }

    /// `[dlp] watch_interval_ms`, if the directory is to be watched.
    pub fn dlp_watch(&self) -> Option<(std::path::PathBuf, Duration)> {
        self.dlp
            .as_ref()
            .filter(|d| d.watch_interval_ms > 0)
            .map(|d| {
                (
                    d.policies.clone(),
                    Duration::from_millis(d.watch_interval_ms),
                )
            })
    }
    pub fn static_policy(&self) -> &StaticPolicy {
        &self.base.base
    }
    pub fn limits(&self) -> &LimitsConfig {
        &self.limits
    }
    pub fn admission(&self) -> &super::admission::Admission {
        &self.admission
    }
    pub fn txn_limits(&self) -> TxnLimits {
        TxnLimits {
            max_pdus: self.limits.max_pdus,
            max_edus: self.limits.max_edus,
            max_pdu_bytes: self.limits.max_pdu_bytes,
        }
    }
    pub fn unknown_endpoint_forbidden(&self) -> bool {
        self.unknown_forbidden
    }
    pub fn is_protected(&self, server_name: &str) -> bool {
        self.protected
            .iter()
            .any(|p| p.server_name.eq_ignore_ascii_case(server_name))
    }

    /// Which protected server an inbound request is for: the signed X-Matrix destination if
    /// present (must be ours), else SNI, else the Host header, else the only one.
    pub fn protected_for(
        &self,
        xmatrix_dest: Option<&str>,
        sni: Option<&str>,
        host: Option<&str>,
    ) -> Option<&Protected> {
        if let Some(d) = xmatrix_dest {
            return self
                .protected
                .iter()
                .find(|p| p.server_name.eq_ignore_ascii_case(d));
        }
        if let Some(h) = host {
            if let Some(p) = self
                .protected
                .iter()
                .find(|p| p.server_name.eq_ignore_ascii_case(h))
            {
                return Some(p);
            }
        }
        if let Some(s) = sni {
            let s = s.to_ascii_lowercase();
            let mut hits = self.protected.iter().filter(|p| p.host == s);
            if let (Some(p), None) = (hits.next(), hits.next()) {
                return Some(p);
            }
        }
        match self.protected.as_slice() {
            [only] => Some(only),
            _ => None,
        }
    }

    pub fn inbound_upstream(&self, server_name: &str) -> Option<&Upstream> {
        self.protected
            .iter()
            .find(|p| p.server_name.eq_ignore_ascii_case(server_name))
            .map(|p| &p.upstream)
    }
    pub fn outbound_upstream(&self) -> Option<&Upstream> {
        self.outbound.as_ref().map(|o| &o.upstream)
    }

    /// The watches of every upstream this guard sends to (`/health`, gauges).
    pub fn upstream_watches(&self) -> Vec<Arc<super::upstream::Watch>> {
        let mut out = Vec::new();
        for p in &self.protected {
            out.push(p.upstream.watch().clone());
            if let Some((a, _)) = &p.admin {
                out.push(a.watch().clone());
            }
        }
        if let Some(o) = &self.outbound {
            out.push(o.upstream.watch().clone());
        }
        out
    }

    /// The keys `/health` entry: degraded while the guard's own fetches of remote signing
    /// keys fail (requests whose keys it cannot get are refused) or hang.
    pub fn keys_health(&self) -> crate::admin::Health {
        match self.key_fetches.health() {
            Ok(()) => crate::admin::Health::Ok,
            Err(why) => crate::admin::Health::Degraded(why),
        }
    }

    /// Whether a DLP rule set is configured (`[dlp]`).
    pub fn has_dlp(&self) -> bool {
        self.dlp.is_some()
    }

    /// Whether an outbound client address may use the outbound listeners.
    pub fn client_allowed(&self, addr: &SocketAddr) -> bool {
        self.outbound
            .as_ref()
            .is_some_and(|o| o.allowed_clients.iter().any(|n| n.contains(&addr.ip())))
    }
}

/// Fetches remote server keys for the guard's own verification over the outbound path.
pub struct OutboundKeyFetcher<'a>(pub &'a Upstream);

impl crate::keys::KeyFetcher for OutboundKeyFetcher<'_> {
    fn fetch<'a>(
        &'a self,
        server: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<Vec<u8>, crate::keys::RemoteKeyError>> {
        Box::pin(async move {
            let t0 = std::time::Instant::now();
            let r = self.0.fetch_server_keys(server).await;
            // Counted like every request the guard sends, under its own endpoint label.
            let status = if r.is_ok() { 200 } else { 502 };
            crate::telemetry::record_request(
                crate::telemetry::Direction::Outbound,
                "guard_key_fetch",
                status,
                t0.elapsed(),
            );
            r.map(|b| b.to_vec())
                .map_err(|e| crate::keys::RemoteKeyError::Fetch {
                    server: server.to_string(),
                    reason: e.to_string(),
                })
        })
    }
}

/// Fetches server keys for the guard's PDU checks: a protected server's from its own federation
/// listener (the guard sits in front of it; the outbound path would not reach it), every other
/// server's over the outbound path ([`OutboundKeyFetcher`]).
pub struct GuardKeyFetcher<'a>(pub &'a Guard);

impl crate::keys::KeyFetcher for GuardKeyFetcher<'_> {
    fn fetch<'a>(
        &'a self,
        server: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<Vec<u8>, crate::keys::RemoteKeyError>> {
        Box::pin(async move {
            let pending = self.0.key_fetches.start();
            let r = self.fetch_untracked(server).await;
            pending.finish(match &r {
                Ok(_) => Ok(()),
                Err(_) => Err(("key_fetch", None)),
            });
            r
        })
    }
}

impl GuardKeyFetcher<'_> {
    async fn fetch_untracked(&self, server: &str) -> Result<Vec<u8>, crate::keys::RemoteKeyError> {
        {
            let upstream = match self.0.inbound_upstream(server) {
                Some(u) if self.0.is_protected(server) => u,
                _ => {
                    let Some(out) = self.0.outbound_upstream() else {
                        return Err(crate::keys::RemoteKeyError::Fetch {
                            server: server.to_string(),
                            reason: "no outbound path".into(),
                        });
                    };
                    return crate::keys::KeyFetcher::fetch(&OutboundKeyFetcher(out), server).await;
                }
            };
            let t0 = std::time::Instant::now();
            let r = upstream.fetch_server_keys(server).await;
            let status = if r.is_ok() { 200 } else { 502 };
            crate::telemetry::record_request(
                crate::telemetry::Direction::Inbound,
                "guard_key_fetch",
                status,
                t0.elapsed(),
            );
            r.map(|b| b.to_vec())
                .map_err(|e| crate::keys::RemoteKeyError::Fetch {
                    server: server.to_string(),
                    reason: e.to_string(),
                })
        }
    }
}

/// The sockets the guard serves on. Bound by the caller (tests bind port 0).
#[derive(Default)]
pub struct Listeners {
    pub inbound: Option<TcpListener>,
    pub connect: Option<TcpListener>,
    pub proxy: Option<TcpListener>,
    pub admin: Option<TcpListener>,
    /// `[[ti.homeserver]] client_listen`: the client-server reverse proxies, by server name.
    pub client: Vec<(String, TcpListener)>,
}

impl Listeners {
    /// Binds every listener the config names.
    pub async fn bind(cfg: &Config) -> Result<Self, GuardError> {
        async fn b(
            what: &'static str,
            addr: Option<SocketAddr>,
        ) -> Result<Option<TcpListener>, GuardError> {
            match addr {
                None => Ok(None),
                Some(addr) => TcpListener::bind(addr)
                    .await
                    .map(Some)
                    .map_err(|source| GuardError::Bind { what, addr, source }),
            }
        }
        Ok(Listeners {
            inbound: b("inbound", cfg.inbound.as_ref().map(|i| i.listen)).await?,
            connect: b(
                "connect",
                cfg.outbound.as_ref().and_then(|o| o.connect_listen),
            )
            .await?,
            proxy: b("proxy", cfg.outbound.as_ref().and_then(|o| o.proxy_listen)).await?,
            admin: b("admin", Some(cfg.admin.listen)).await?,
            client: {
                let mut v = Vec::new();
                for h in cfg.ti.iter().flat_map(|t| &t.homeserver) {
                    if let Some(l) = b("client", h.client_listen).await? {
                        v.push((h.server_name.clone(), l));
                    }
                }
                v
            },
        })
    }
}

/// Shutdown signal shared by listeners and connections.
#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
    /// Held by every connection task; `serve` waits until all are dropped.
    _alive: mpsc::Sender<()>,
}

impl Shutdown {
    pub async fn wait(&mut self) {
        while !*self.rx.borrow() {
            if self.rx.changed().await.is_err() {
                return;
            }
        }
    }
}

/// How long in-flight exchanges get to finish after shutdown is requested.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Serves until `shutdown` resolves, then drains connections (bounded by [`DRAIN_TIMEOUT`]).
pub async fn serve(guard: Arc<Guard>, listeners: Listeners, shutdown: impl Future<Output = ()>) {
    super::admission::memory::start();
    let (tx, rx) = watch::channel(false);
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let sd = Shutdown {
        rx,
        _alive: alive_tx,
    };
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    if let Some(l) = listeners.admin {
        let mut state = crate::admin::AdminState::new(
            crate::telemetry::metrics_handle(),
            ready.clone(),
            guard.admin_access.clone(),
        );
        state.room_labels = Arc::new(super::room_labels::view::GuardRoomLabels(guard.clone()));
        state.queue = Arc::new(super::hold::GuardReviews(guard.clone()));
        if let Some(a) = guard.auditor() {
            state.journal = Arc::new(super::audit_trail::AuditJournal(a.clone()));
        }
        state.checks = super::health::checks(&guard);
        if let Some(dir) = &guard.audit_dir {
            state.audit = Arc::new(super::audit_trail::AuditDir(dir.clone()));
        }
        let s = sd.clone();
        info!(addr = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(), "admin listener");
        tasks.push(tokio::spawn(async move {
            let mut s2 = s.clone();
            if let Err(e) = crate::admin::run(l, state, async move { s2.wait().await }).await {
                error!("admin listener failed: {e}");
            }
            drop(s);
        }));
    }
    tasks.push(tokio::spawn(super::pause::watch(guard.clone(), sd.clone())));
    tasks.push(tokio::spawn(super::health::refresh_gauges(
        guard.clone(),
        sd.clone(),
    )));
    tasks.push(tokio::spawn(super::media::prune(guard.clone(), sd.clone())));
    {
        let mut s = sd.clone();
        tasks.push(tokio::spawn(super::notices::deliver(
            guard.clone(),
            async move { s.wait().await },
        )));
    }
    tasks.push(tokio::spawn(super::hold::delivery::run(
        guard.clone(),
        sd.clone(),
    )));
    // The gauges of the running rule set (the admin listener installed the recorder).
    guard.publish_policy_identity();
    guard.record_load(crate::policy::identity::LoadEvent::Startup);
    if let Some((dir, every)) = guard.dlp_watch() {
        tasks.push(tokio::spawn(reload::watch_dlp(
            guard.clone(),
            dir,
            every,
            sd.clone(),
        )));
    }
    if let Some(l) = listeners.inbound {
        tasks.push(tokio::spawn(super::inbound::run(
            guard.clone(),
            l,
            sd.clone(),
        )));
    }
    if let Some(l) = listeners.connect {
        tasks.push(tokio::spawn(super::outbound::run_connect(
            guard.clone(),
            l,
            sd.clone(),
        )));
    }
    if let Some(l) = listeners.proxy {
        tasks.push(tokio::spawn(super::outbound::run_proxy(
            guard.clone(),
            l,
            sd.clone(),
        )));
    }
    // TI-Messenger profile: the federation list is fetched at start and refreshed.
    if let Some(ti) = guard.ti() {
        crate::ti::keeper::describe_metrics();
        let mut s = sd.clone();
        tasks.push(tokio::spawn(
            ti.keeper.clone().run(async move { s.wait().await }),
        ));
    }
    for (server_name, l) in listeners.client {
        tasks.push(tokio::spawn(super::client_api::run(
            guard.clone(),
            server_name,
            l,
            sd.clone(),
        )));
    }
    // Split appliance: the links to the other half; requests from it run through this half's
    // phases (`exchange::handle_crossed`).
    if let Some(split) = guard.split().cloned() {
        let g = guard.clone();
        let handler: crate::split::link::Handler = Arc::new(move |proof, req| {
            let g = g.clone();
            Box::pin(async move { super::exchange::handle_crossed(&g, proof, req).await })
        });
        match split.start(handler, sd.rx.clone()).await {
            Ok(t) => tasks.extend(t),
            // Without its links a half passes nothing: every request times out (504).
            Err(e) => error!("split appliance: {e}"),
        }
    }
    ready.store(true, std::sync::atomic::Ordering::SeqCst);
    shutdown.await;
    info!("shutting down: no new connections, draining in-flight exchanges");
    let _ = tx.send(true);
    drop(sd);
    for t in tasks {
        let _ = t.await;
    }
    if tokio::time::timeout(DRAIN_TIMEOUT, alive_rx.recv())
        .await
        .is_err()
    {
        error!("drain timeout: closing remaining connections");
    }
}
