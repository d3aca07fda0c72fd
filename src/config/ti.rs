//! `[ti]`: the TI-Messenger profile (`crate::ti`): the guard as the Messenger-Proxy of a
//! TI-Messenger homeserver.
//!
//! ```toml
//! [ti]
//! # which invite permission config the homeserver's users keep:
//! # "pro" (de.gematik.tim.account.permissionconfig.pro.v1) or "epa" (….epa.v1)
//! variant = "pro"
//! # trust anchors of the federation list signer: the TSL root list (JSON array of
//! # {"cert": base64 DER, …}) and the intermediate CA certificates (DER)
//! tsl_roots = "/etc/grenzwacht/ti/tsl_roots.json"
//! intermediates = ["/etc/grenzwacht/ti/GEM.KOMP-CA50.der"]
//! # where the list comes from: the VZD (HTTP GET, `?version=N`, 204 = unchanged) …
//! vzd_url = "https://fhir-directory.vzd.ti-dienste.de/tim-provider-services/FederationList/federationList.jws"
//! vzd_token_file = "/etc/grenzwacht/ti/vzd.token"   # bearer token of the provider (optional)
//! # vzd_ca = "/etc/grenzwacht/ti/vzd-ca.pem"        # TLS roots for the VZD (default: web PKI)
//! # … or a file another process keeps current
//! # list_file = "/var/lib/grenzwacht/ti/federation-list.jws"
//! # the last good list is kept here (loaded at start, replaced after each verified fetch)
//! state_dir = "/var/lib/grenzwacht/ti"
//! refresh_interval_secs = 3600   # fetch this often
//! max_age_secs = 259200          # 72 h after the last successful verification: block federation
//! miss_refetch_secs = 60         # an unknown domain refetches at most this often
//! permission_cache_secs = 30     # a user's permission config is reused this long
//! release_encrypted = true       # end-to-end encrypted content crosses ([opaque] in TI terms)
//!
//! [[ti.homeserver]]              # one per protected TI homeserver
//! server_name = "tim.example.de" # a [[protected]] server_name
//! admin_url = "http://127.0.0.1:8008"          # Synapse admin API (account data)
//! admin_token_file = "/etc/grenzwacht/ti/admin.token"
//! # the client-server reverse proxy in front of this homeserver (optional)
//! client_listen = "0.0.0.0:8443"
//! client_upstream = "http://127.0.0.1:8008"
//! # client_tls_cert = "…" ; client_tls_key = "…"  # HTTPS on client_listen (both or neither)
//! ```
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Which account data type holds a user's invite permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TiVariant {
    /// TI-Messenger Pro: `de.gematik.tim.account.permissionconfig.pro.v1`.
    #[default]
    Pro,
    /// TI-Messenger ePA: `de.gematik.tim.account.permissionconfig.epa.v1`; invites between two
    /// insured persons' domains are refused.
    Epa,
}

impl TiVariant {
    /// The account data type of the permission config.
    pub fn account_data_type(self) -> &'static str {
        match self {
            TiVariant::Pro => "de.gematik.tim.account.permissionconfig.pro.v1",
            TiVariant::Epa => "de.gematik.tim.account.permissionconfig.epa.v1",
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            TiVariant::Pro => "pro",
            TiVariant::Epa => "epa",
        }
    }
}

/// `[ti]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TiConfig {
    pub variant: TiVariant,
    /// TSL root list (JSON, the format of gematik's `tsl_roots` list).
    pub tsl_roots: PathBuf,
    /// Intermediate CA certificates (DER files).
    pub intermediates: Vec<PathBuf>,
    /// The VZD's federation list URL (`https://…` or, for tests on loopback, `http://127.…`).
    pub vzd_url: Option<String>,
    /// Bearer token for the VZD (file content, trimmed).
    pub vzd_token_file: Option<PathBuf>,
    /// PEM roots for the VZD's TLS certificate (default: the web PKI roots).
    pub vzd_ca: Option<PathBuf>,
    /// A JWS file kept current by another process (instead of `vzd_url`).
    pub list_file: Option<PathBuf>,
    /// Directory of the last good list (`federation-list.jws` + `federation-list.state.json`).
    pub state_dir: PathBuf,
    pub refresh_interval_secs: u64,
    /// Seconds after the last successful verification beyond which all federation is refused.
    pub max_age_secs: u64,
    /// Minimum seconds between refetches caused by an unknown domain.
    pub miss_refetch_secs: u64,
    /// Seconds a user's permission config is reused.
    pub permission_cache_secs: u64,
    /// End-to-end encrypted content crosses (the TI profile's policy; default `true`).
    pub release_encrypted: bool,
    /// `[[ti.homeserver]]`
    pub homeserver: Vec<TiHomeserver>,
}

impl Default for TiConfig {
    fn default() -> Self {
        TiConfig {
            variant: TiVariant::Pro,
            tsl_roots: PathBuf::new(),
            intermediates: Vec::new(),
            vzd_url: None,
            vzd_token_file: None,
            vzd_ca: None,
            list_file: None,
            state_dir: PathBuf::new(),
            refresh_interval_secs: 3600,
            max_age_secs: 72 * 3600,
            miss_refetch_secs: 60,
            permission_cache_secs: 30,
            release_encrypted: true,
            homeserver: Vec::new(),
        }
    }
}

/// `[[ti.homeserver]]`: one protected TI homeserver.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TiHomeserver {
    /// A `[[protected]]` server name.
    pub server_name: String,
    /// Base URL of the homeserver's admin API (`/_synapse/admin/...`).
    pub admin_url: String,
    /// File holding an admin access token (content trimmed).
    pub admin_token_file: PathBuf,
    /// Client-server reverse proxy listener in front of this homeserver.
    #[serde(default)]
    pub client_listen: Option<SocketAddr>,
    /// Where client requests go (the homeserver's client listener). Needed with `client_listen`.
    #[serde(default)]
    pub client_upstream: Option<String>,
    #[serde(default)]
    pub client_tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub client_tls_key: Option<PathBuf>,
}

impl TiConfig {
    /// Cross-field checks: `(dotted key, message)` pairs.
    pub fn check(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.tsl_roots.as_os_str().is_empty() {
            out.push(("tsl_roots".into(), "`ti.tsl_roots` must be set".into()));
        }
        if self.state_dir.as_os_str().is_empty() {
            out.push(("state_dir".into(), "`ti.state_dir` must be set".into()));
        }
        match (&self.vzd_url, &self.list_file) {
            (None, None) => out.push((
                "vzd_url".into(),
                "`[ti]` needs a list source: `vzd_url` or `list_file`".into(),
            )),
            (Some(_), Some(_)) => out.push((
                "list_file".into(),
                "`ti.vzd_url` and `ti.list_file` exclude each other".into(),
            )),
            _ => {}
        }
        if let Some(u) = &self.vzd_url {
            if !(u.starts_with("https://") || u.starts_with("http://")) {
                out.push((
                    "vzd_url".into(),
                    "`ti.vzd_url` must be an http(s) URL".into(),
                ));
            }
        }
        if self.max_age_secs == 0 {
            out.push((
                "max_age_secs".into(),
                "`ti.max_age_secs` must be greater than 0".into(),
            ));
        }
        if self.refresh_interval_secs == 0 {
            out.push((
                "refresh_interval_secs".into(),
                "`ti.refresh_interval_secs` must be greater than 0".into(),
            ));
        }
        for (i, h) in self.homeserver.iter().enumerate() {
            let key = |k: &str| format!("homeserver.{i}.{k}");
            if h.server_name.is_empty() {
                out.push((key("server_name"), "`server_name` must be set".into()));
            }
            if !(h.admin_url.starts_with("http://") || h.admin_url.starts_with("https://")) {
                out.push((
                    key("admin_url"),
                    "`admin_url` must be an http(s) URL".into(),
                ));
            }
            if h.client_listen.is_some() && h.client_upstream.is_none() {
                out.push((
                    key("client_upstream"),
                    "`client_listen` needs `client_upstream`".into(),
                ));
            }
            if h.client_tls_cert.is_some() != h.client_tls_key.is_some() {
                out.push((
                    key("client_tls_cert"),
                    "`client_tls_cert` and `client_tls_key` go together".into(),
                ));
            }
        }
        out
    }

    /// Resolves relative paths against the config file's directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() && !p.as_os_str().is_empty() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.tsl_roots);
        fix(&mut self.state_dir);
        self.intermediates.iter_mut().for_each(fix);
        self.vzd_token_file.as_mut().map(fix);
        self.vzd_ca.as_mut().map(fix);
        self.list_file.as_mut().map(fix);
        for h in &mut self.homeserver {
            fix(&mut h.admin_token_file);
            h.client_tls_cert.as_mut().map(fix);
            h.client_tls_key.as_mut().map(fix);
        }
    }

    /// The `[[ti.homeserver]]` entry of a protected server.
    pub fn homeserver(&self, server_name: &str) -> Option<&TiHomeserver> {
        self.homeserver
            .iter()
            .find(|h| h.server_name.eq_ignore_ascii_case(server_name))
    }
}
