//! The guard's TOML configuration.
//!
//! The schema (tables, keys, types, defaults, cross-field checks) is documented here;
//! `deploy/grenzwacht.example.toml` is a commented example of a full deployment.
//!
//! # Design notes
//!
//! * **Every error at once.** An operator fixing a config file should not have to run
//!   `grenzwacht check` once per typo. The file is parsed once with `toml_edit` (which keeps
//!   byte spans), then every top-level table and every `[[protected]]` / `[[route]]` element is
//!   deserialised on its own, wrapped in `serde_ignored` to collect unknown keys. When a value
//!   has the wrong type, the offending key is removed and the table is deserialised again, so
//!   later keys of the same table are still checked. Cross-field checks run over whatever
//!   parsed, and everything is reported together, sorted by position, as
//!   `file:line:column: message` (see [`ConfigErrors`]).
//! * **Unknown keys are errors**, everywhere: a misspelt security setting must never silently
//!   fall back to a permissive default.
//! * **Relative paths** (certificates, keys, CA directory, roots, secret file, store file) are
//!   resolved against the directory of the config file, so a config directory can be moved as
//!   a whole.
//! * The types here are plain data with public fields: other modules read them directly, and
//!   tests build them with struct literals and [`Default`].
//! * Syntax errors (broken TOML) stop parsing: TOML cannot be recovered reliably after one,
//!   so that single error is reported.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::federation::EndpointClass;

pub mod admin;
pub mod admission;
pub mod audit;
pub mod labels;
pub mod media;
pub mod notices;
pub use media::MediaConfig;
pub mod opaque;
mod parse;
pub mod review;
pub mod rules;
pub mod split;
#[cfg(test)]
mod tests;
pub mod ti;

/// The whole guard configuration. Field names are the TOML table names.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    /// `[log]`
    pub log: LogConfig,
    /// `[admin]`: the admin listener (`/metrics`, `/health`, the admin API).
    pub admin: AdminConfig,
    /// `[inbound]`: remote → protected. `None` disables the inbound path.
    pub inbound: Option<InboundConfig>,
    /// `[[protected]]`: the protected homeservers.
    pub protected: Vec<ProtectedServer>,
    /// `[outbound]`: protected → remote. `None` disables the outbound path.
    pub outbound: Option<OutboundConfig>,
    /// `[[route]]`: the static route table, consulted before server discovery.
    pub routes: Vec<Route>,
    /// `[discovery]`
    pub discovery: DiscoveryConfig,
    /// `[limits]`
    pub limits: LimitsConfig,
    /// `[admission]`: caps, timeouts and budgets before authentication (`proxy::admission`).
    pub admission: admission::AdmissionConfig,
    /// `[policy]`
    pub policy: PolicyConfig,
    /// `[[rule]]`: keyword/regex content rules (see `policy::rules`).
    pub rules: Vec<rules::RuleConfig>,
    /// `[keys]`: the guard's own signing key.
    pub keys: KeysConfig,
    /// `[store]`: the embedded state store (`crate::store`).
    pub store: StoreConfig,
    /// `[dlp]`: the DLP rule set (`crate::policy::dlp`), if any.
    pub dlp: Option<DlpConfig>,
    /// `[labels]`: security labels on federation traffic (`policy::labels`). `None`: off.
    pub labels: Option<labels::LabelsConfig>,
    /// `[opaque]`: what may cross that the guard cannot read (`policy::opaque`); default deny.
    pub opaque: opaque::OpaqueConfig,
    /// `[media]`: media inspection (`crate::media`, `proxy::media`).
    pub media: MediaConfig,
    /// `[notices]`: telling protected senders what happened to their events (off by default).
    pub notices: notices::NoticesConfig,
    /// `[review]`: review of held events and delivery of held traffic (`proxy::hold`).
    pub review: review::ReviewConfig,
    /// `[audit]`: the tamper-evident audit log (`crate::audit`). `None`: no audit log.
    pub audit: Option<audit::AuditConfig>,
    /// `[ti]`: the TI-Messenger profile (`crate::ti`). `None`: off.
    pub ti: Option<ti::TiConfig>,
    /// `[split]`: this guard is one half of a split appliance.
    pub split: Option<split::SplitConfig>,
}

/// `[dlp]`: where the DLP rule files are and how they are reloaded.
///
/// Every `*.toml` file of `policies` is loaded and compiled into one engine at start
/// (`grenzwacht check` and `grenzwacht policy check` report its diagnostics). The rule set is
/// reloaded on SIGHUP and, with `watch_interval_ms > 0`, when a file changes (polled; loaded once
/// unchanged for two polls); a rule set that fails to load, or that lacks a rule file or rule id
/// of the running one, is refused and the running one stays (SIGUSR1 accepts a smaller set).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DlpConfig {
    /// Directory of rule files; relative paths are resolved against the config file's directory.
    pub policies: PathBuf,
    /// Poll the directory for changes every this many milliseconds (0 = only on SIGHUP).
    /// Default 2000.
    #[serde(default = "default_watch_interval")]
    pub watch_interval_ms: u64,
}

fn default_watch_interval() -> u64 {
    2000
}

/// `[keys]`: keys the guard holds itself.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeysConfig {
    /// The guard key (Synapse `signing.key` format). With it, the guard attests remote servers'
    /// keys to the protected servers and re-signs modified inbound requests; without it,
    /// inbound requests that policy wants modified are refused.
    pub guard_key: Option<PathBuf>,
    /// Verify the signatures and content hashes of every PDU that enters the protected side
    /// (inbound requests, responses to outbound requests). Keys are fetched by the guard over
    /// the outbound path, so this needs `[outbound]`. Default `true`.
    pub verify_pdus: bool,
    /// Serve as the protected servers' notary under this server name (their
    /// `trusted_key_servers` entry, with the guard key as its verify key): key queries they send
    /// to this name are answered by the guard itself. Needs `guard_key`.
    pub notary_name: Option<String>,
}

impl Default for KeysConfig {
    fn default() -> Self {
        KeysConfig {
            guard_key: None,
            verify_pdus: true,
            notary_name: None,
        }
    }
}

/// Log output format (`[log] format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// `"text"` (default) or `"json"`.
    pub format: LogFormat,
    /// A `tracing_subscriber::EnvFilter` directive (default `"info"`).
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

/// `[admin]` (principals and TLS: see [`admin`])
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct AdminConfig {
    /// Admin listener address (default `127.0.0.1:9100`).
    pub listen: SocketAddr,
    /// `/metrics` needs a principal's token or client certificate (default `false`).
    pub metrics_auth: bool,
    /// `[admin.tls]`: HTTPS and client certificates. `None`: plain HTTP.
    pub tls: Option<admin::AdminTlsConfig>,
    /// `[[admin.principal]]`: the users of the admin API.
    pub principal: Vec<admin::PrincipalConfig>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9100),
            metrics_auth: false,
            tls: None,
            principal: Vec::new(),
        }
    }
}

/// `[inbound]`: the TLS listener remote servers connect to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InboundConfig {
    /// Listener address (required).
    pub listen: SocketAddr,
    /// Verify the X-Matrix signature of every inbound request against the origin's keys, which
    /// the guard fetches itself over the outbound path (needs `[outbound]`). Default `true`.
    #[serde(default = "default_true")]
    pub verify_signatures: bool,
}

fn default_true() -> bool {
    true
}

/// `[[protected]]`: one protected homeserver.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ProtectedServer {
    /// Matrix server name (`host`, `host:port`, `1.2.3.4:8448`, `[::1]:8448`).
    pub server_name: String,
    /// PEM certificate chain presented to remotes (chosen by SNI; the first server's is the
    /// default).
    pub cert: PathBuf,
    /// PEM private key for `cert`.
    pub key: PathBuf,
    /// The homeserver's federation listener: `http://host:port` or `https://host:port`
    /// (validated on load; use [`ProtectedServer::upstream_parts`]). Required, except on the
    /// LOW half of a split appliance, which never reaches the protected server (it must be
    /// left out there).
    #[serde(default)]
    pub upstream: String,
    /// PEM roots for an `https` upstream (default: webpki roots).
    #[serde(default)]
    pub upstream_ca: Option<PathBuf>,
    /// The homeserver's signing key, Synapse `signing.key` format (re-signing modified
    /// outbound requests).
    #[serde(default)]
    pub signing_key: Option<PathBuf>,
    /// The homeserver's admin API (Synapse's client listener, `http://host:port`): the guard
    /// asks it for the version of a room it does not know (`GET /_synapse/admin/v1/rooms/{id}`)
    /// and, with `[labels]`, for a room's security label before anything of a room whose label
    /// it has not seen leaves the protected side (`GET /_synapse/admin/v1/rooms/{id}/state`).
    #[serde(default)]
    pub admin_api: Option<String>,
    /// File holding an access token of a homeserver admin for `admin_api` (read when needed,
    /// so it can be rotated). A Synapse admin token grants full admin rights: see
    /// deploy/README.md for how to limit its exposure.
    #[serde(default)]
    pub admin_token_file: Option<PathBuf>,
}

/// The parts of a validated upstream URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `true` for `https://`.
    pub https: bool,
    /// Host without brackets (`127.0.0.1`, `::1`, `hs1.internal`): the TLS name for https.
    pub host: String,
    /// Explicit port, or 80 / 443 by scheme.
    pub port: u16,
    /// `host:port` with IPv6 hosts in brackets: the `Host` / connect authority.
    pub authority: String,
}

impl ProtectedServer {
    /// `(is_https, "host:port")` of [`upstream`](Self::upstream), port defaulted by scheme.
    ///
    /// `None` only if `upstream` is not a valid upstream URL, which [`Config::load`] rules out.
    pub fn upstream_parts(&self) -> Option<(bool, String)> {
        self.upstream_target().map(|u| (u.https, u.authority))
    }

    /// All parts of [`upstream`](Self::upstream); `None` if it is invalid (not after load).
    pub fn upstream_target(&self) -> Option<Upstream> {
        parse_upstream(&self.upstream).ok()
    }
}

/// `[outbound]`: the ways a protected homeserver sends federation traffic through the guard.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct OutboundConfig {
    /// HTTP CONNECT proxy listener (the homeserver's `https_proxy`).
    pub connect_listen: Option<SocketAddr>,
    /// Synapse outbound federation proxy protocol listener.
    pub proxy_listen: Option<SocketAddr>,
    /// Source networks allowed to use either listener. A bare IP address means a single host.
    #[serde(deserialize_with = "parse::de_ipnets")]
    pub allowed_clients: Vec<ipnet::IpNet>,
    /// Bearer secret for `proxy_listen` (exactly one of this and `proxy_secret_file`).
    pub proxy_secret: Option<String>,
    /// File holding the bearer secret (surrounding whitespace is ignored).
    pub proxy_secret_file: Option<PathBuf>,
    /// Interception CA directory (`grenzwacht ca init --dir`), required with `connect_listen`.
    pub interception_ca_dir: Option<PathBuf>,
    /// Let CONNECT clients in without the proxy secret (default `false`: `connect_listen` needs
    /// `proxy_secret`/`proxy_secret_file`). Only for setups where the network already limits the
    /// outbound listener to the homeserver.
    pub allow_unauthenticated_connect: bool,
    /// Lifetime of minted leaf certificates in seconds (default 3600, at least 300).
    pub leaf_validity_secs: u64,
    /// PEM roots to verify destinations; empty = webpki roots.
    pub roots: Vec<PathBuf>,
    /// Connect timeout towards destinations, milliseconds (default 10000).
    pub connect_timeout_ms: u64,
    /// From sending a request to the response head, milliseconds (default 30000, at most
    /// `request_timeout_ms`): a frozen upstream is given up after this, counted and reported.
    /// Applies to every upstream.
    pub first_byte_timeout_ms: u64,
    /// Whole-request timeout (body included) towards destinations, milliseconds (default
    /// 60000). Applies to every upstream.
    pub request_timeout_ms: u64,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        Self {
            connect_listen: None,
            proxy_listen: None,
            allowed_clients: Vec::new(),
            proxy_secret: None,
            proxy_secret_file: None,
            interception_ca_dir: None,
            allow_unauthenticated_connect: false,
            leaf_validity_secs: 3600,
            roots: Vec::new(),
            connect_timeout_ms: 10_000,
            first_byte_timeout_ms: 30_000,
            request_timeout_ms: 60_000,
        }
    }
}

/// Minimum for `[outbound] leaf_validity_secs`.
pub const MIN_LEAF_VALIDITY_SECS: u64 = 300;

impl OutboundConfig {
    /// The proxy bearer secret: `proxy_secret`, or the trimmed content of `proxy_secret_file`.
    /// `Ok(None)` if neither is set. An unreadable or empty file is an error.
    pub fn secret(&self) -> Result<Option<String>, ConfigError> {
        if let Some(s) = &self.proxy_secret {
            return Ok(Some(s.clone()));
        }
        let Some(path) = &self.proxy_secret_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            location: None,
            message: format!("cannot read proxy_secret_file: {e}"),
        })?;
        let secret = text.trim();
        if secret.is_empty() {
            return Err(ConfigError {
                file: path.display().to_string(),
                location: None,
                message: "proxy_secret_file is empty".to_owned(),
            });
        }
        Ok(Some(secret.to_owned()))
    }

    /// `connect_timeout_ms` as a [`Duration`].
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// `request_timeout_ms` as a [`Duration`].
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// `leaf_validity_secs` as a [`Duration`].
    pub fn leaf_validity(&self) -> Duration {
        Duration::from_secs(self.leaf_validity_secs)
    }
}

/// `[[route]]`: a static route, consulted before server discovery.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Route {
    /// Exact Matrix server name (with port if it has one), matched case-insensitively.
    pub server_name: String,
    /// Where to connect: an IP-literal socket address, never resolved.
    pub address: SocketAddr,
    /// Name for SNI and certificate verification (default: host part of `server_name`).
    #[serde(default)]
    pub tls_name: Option<String>,
}

/// `[discovery]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct DiscoveryConfig {
    /// `false`: only `[[route]]` entries and IP-literal server names are reachable.
    pub enabled: bool,
    /// DNS servers; empty = the system's `resolv.conf`.
    pub nameservers: Vec<SocketAddr>,
    /// Destination networks the guard may connect to although they are refused by default
    /// (loopback, link-local, unspecified, multicast): e.g. `["127.0.0.0/8"]` for a lab.
    /// `[[route]]` targets are always allowed.
    pub allow_destinations: Vec<ipnet::IpNet>,
    /// Further destination networks the guard never connects to (outbound federation and key
    /// fetches), e.g. internal ranges that no federation peer uses. Checked on the resolved
    /// addresses.
    pub deny_destinations: Vec<ipnet::IpNet>,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            nameservers: Vec::new(),
            allow_destinations: Vec::new(),
            deny_destinations: Vec::new(),
        }
    }
}

/// `[limits]`: parser limits, all sizes in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct LimitsConfig {
    /// Largest request body (default 13 107 200 = 12.5 MiB, Synapse's cap).
    pub max_request_body: usize,
    /// Largest response body (default 104 857 600 = 100 MiB; send_join state is large).
    pub max_response_body: usize,
    /// Deepest JSON nesting (default 64).
    pub max_json_depth: usize,
    /// Largest PDU (default 65 536, the spec's limit).
    pub max_pdu_bytes: usize,
    /// Most PDUs per transaction (default 50).
    pub max_pdus: usize,
    /// Most EDUs per transaction (default 100).
    pub max_edus: usize,
    /// How long the guard may take to decide one request (parse, authenticate, judge),
    /// milliseconds (default 20000). Past it the request is refused (503) and nothing is
    /// forwarded. The deadline is checked where the decision waits (store, key fetches, room
    /// version lookups), not inside a running policy layer.
    pub decision_timeout_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_request_body: 13_107_200,
            max_response_body: 104_857_600,
            max_json_depth: 64,
            max_pdu_bytes: 65_536,
            max_pdus: 50,
            max_edus: 100,
            decision_timeout_ms: 20_000,
        }
    }
}

/// What an endpoint that is not in the catalog gets (`[policy] unknown_endpoint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownEndpoint {
    /// 404 `M_UNRECOGNIZED` (spec behaviour).
    #[default]
    NotFound,
    /// 403 `M_FORBIDDEN`.
    Forbidden,
}

/// `[policy]`: the allow/deny policy per server and endpoint class.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub struct PolicyConfig {
    /// Response to uncatalogued endpoints.
    pub unknown_endpoint: UnknownEndpoint,
    /// If non-empty, only these remote server names may federate.
    pub allow_servers: Vec<String>,
    /// Remote server names refused in both directions.
    pub deny_servers: Vec<String>,
    /// Endpoint classes refused in both directions.
    pub deny_classes: Vec<EndpointClass>,
    /// Endpoint classes refused for remote → protected.
    pub deny_inbound_classes: Vec<EndpointClass>,
    /// Endpoint classes refused for protected → remote.
    pub deny_outbound_classes: Vec<EndpointClass>,
    /// EDU types allowed besides the ones the guard knows (`m.typing`, `m.receipt`,
    /// `m.presence`, `m.device_list_update`, `m.signing_key_update`, `m.direct_to_device`);
    /// EDUs of any other type are dropped. Their content is scanned like any other.
    pub allow_edu_types: Vec<String>,
}

/// Default for `[store] path`.
pub const DEFAULT_STORE_PATH: &str = "/var/lib/grenzwacht/grenzwacht.db";

/// `[store]`: the embedded SQLite store (room versions, transaction decisions for retries).
///
/// The directory must exist and be writable by the guard (the file is created with mode 0600,
/// plus SQLite's `-wal` and `-shm` files beside it). One guard process per file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct StoreConfig {
    /// Database file (default [`DEFAULT_STORE_PATH`]); relative paths are resolved against the
    /// config file's directory.
    pub path: PathBuf,
    /// How long a transaction decision is kept for retries, hours (default 72, at least 1).
    /// Senders retry a failed transaction for hours; a retry that arrives after its decision
    /// was pruned is decided again.
    pub txn_retention_hours: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from(DEFAULT_STORE_PATH),
            txn_retention_hours: 72,
        }
    }
}

impl StoreConfig {
    /// `txn_retention_hours` as a [`Duration`].
    pub fn txn_retention(&self) -> Duration {
        Duration::from_secs(self.txn_retention_hours.saturating_mul(3600))
    }
}

/// Minimum for `[store] txn_retention_hours`.
pub const MIN_TXN_RETENTION_HOURS: u64 = 1;

/// A position in the config file (1-based; the column counts characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

/// One configuration error. Displays as `file:line:column: message` (or `file: message` when
/// there is no position, e.g. an unreadable file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file the error is in, as given by the caller.
    pub file: String,
    /// Where in the file, if known.
    pub location: Option<Location>,
    /// What is wrong; names the key path, e.g. ``unknown key `outbound.conect_listen` ``.
    pub message: String,
}

impl ConfigError {
    /// Line of the error (1-based), if known.
    pub fn line(&self) -> Option<usize> {
        self.location.map(|l| l.line)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some(l) => write!(f, "{}:{}:{}: {}", self.file, l.line, l.column, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// All errors found in a config file (never empty). Displays one error per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    /// The errors, sorted by position.
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// Iterate over the errors.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.errors.iter()
    }

    /// Number of errors.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Always `false` for errors returned by this module.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

impl Config {
    /// Read, parse and validate a config file. Relative paths inside it are resolved against
    /// the (absolute) directory of `path`; messages name `path` as given.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigErrors> {
        Self::load_with(path.as_ref(), false)
    }

    /// [`Config::load`], and every file and directory the config names must exist and be
    /// readable: all that are not are reported in one go, each at its line (what `check` and
    /// `serve` use; nothing is written).
    pub fn load_for_use(path: impl AsRef<Path>) -> Result<Config, ConfigErrors> {
        Self::load_with(path.as_ref(), true)
    }

    fn load_with(path: &Path, check_files: bool) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
            errors: vec![ConfigError {
                file: path.display().to_string(),
                location: None,
                message: format!("cannot read config file: {e}"),
            }],
        })?;
        let base = std::path::absolute(path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf));
        parse::parse(
            &text,
            &path.display().to_string(),
            base.as_deref(),
            check_files,
        )
    }

    /// Parse and validate config text. `origin` names the file in messages, and its parent
    /// directory (if any) is the base for relative paths.
    pub fn from_str(text: &str, origin: impl AsRef<Path>) -> Result<Config, ConfigErrors> {
        let origin = origin.as_ref();
        let base = origin.parent().filter(|p| !p.as_os_str().is_empty());
        parse::parse(text, &origin.display().to_string(), base, false)
    }
}

/// Parse and check an upstream URL: `http://` or `https://`, a host, an optional port, no
/// user info, path (other than `/`), query or fragment.
pub(crate) fn parse_upstream(s: &str) -> Result<Upstream, String> {
    let uri: http::Uri = s
        .parse()
        .map_err(|e| format!("`{s}` is not a valid URL: {e}"))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(format!("`{s}` must start with http:// or https://")),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| format!("`{s}` has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!("`{s}` must not contain user info"));
    }
    let host = authority.host();
    if host.is_empty() {
        return Err(format!("`{s}` has no host"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() || s.contains('#') {
        return Err(format!(
            "`{s}` must be a base URL without path, query or fragment (paths are forwarded as-is)"
        ));
    }
    if authority.as_str().ends_with(':') {
        return Err(format!("`{s}` has an empty port"));
    }
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    Ok(Upstream {
        https,
        authority: format!("{host}:{port}"),
        host: bare,
        port,
    })
}
