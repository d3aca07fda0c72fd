//! Matrix server-name resolution for outbound re-origination.
//!
//! Given the destination server name of an outbound request, find where to connect, which name
//! the TLS certificate must carry (and SNI), and which `Host` header to send.
//!
//! # Order (server-server API, "Resolving server names", spec v1.19)
//!
//! 0. **Static route table** (`[[route]]`, exact server name, case-insensitive): always first,
//!    never touches DNS. Closed federations and tests live here.
//! 1. **IP literal** (`1.2.3.4`, `[::1]`, with or without port; default 8448): TLS name is the
//!    IP (no SNI), `Host` is the server name as given. Reachable even with discovery disabled.
//!
//! With `[discovery] enabled = false` everything else is [`DiscoveryError::NoRoute`]. Otherwise:
//!
//! 2. **Hostname with explicit port**: AAAA/A for the hostname; `Host` = server name.
//! 3. **`/.well-known/matrix/server`** over HTTPS on the hostname (redirects followed, bounded;
//!    cached: `Cache-Control: max-age` capped to 48 h, default 24 h, failures 1 h). A valid
//!    `m.server` delegation is resolved as: IP literal (port or 8448) → explicit port (AAAA/A)
//!    → SRV `_matrix-fed._tcp.<delegated>` → deprecated SRV `_matrix._tcp.<delegated>` →
//!    `<delegated>:8448`. TLS name is the delegated hostname; `Host` is the delegated server
//!    name (with port only if it had one).
//! 4. SRV `_matrix-fed._tcp.<hostname>`, then 5. deprecated `_matrix._tcp.<hostname>`,
//! 6. else `<hostname>:8448`. TLS name and `Host` are the hostname.
//!
//! # Design notes
//!
//! * DNS and HTTPS sit behind the object-safe [`DiscoveryBackend`] trait, so the order above is
//!   unit-tested with a fake backend and no test ever resolves a name. [`SystemBackend`] is the
//!   real one (hickory-resolver, hyper + tokio-rustls for the well-known fetch).
//! * Only well-known results are cached here; DNS answers are cached by hickory per their TTL.
//! * SRV targets are tried by priority (ascending), then weight (descending); the RFC 2782
//!   weighted random choice is not implemented — the caller gets all addresses in that order
//!   and may try them one after another. A single SRV record with target `.` means "service
//!   decidedly not available" and fails resolution ([`DiscoveryError::SrvUnavailable`]).
//! * An SRV or address lookup that fails (as opposed to "no such record") fails the resolution
//!   (fail closed; the homeserver will retry) instead of silently falling through to another
//!   step that might pick a different host.

pub use crate::federation::server_name::{Host, ServerName, DEFAULT_PORT};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{Config, DiscoveryConfig, Route};

mod system;
#[cfg(test)]
mod tests;

pub use system::SystemBackend;

/// Default cache lifetime of a well-known response without `Cache-Control: max-age`.
pub const WELL_KNOWN_DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
/// Cap on the cache lifetime of a well-known response.
pub const WELL_KNOWN_MAX_TTL: Duration = Duration::from_secs(48 * 3600);
/// Cache lifetime of a failed or invalid well-known lookup.
pub const WELL_KNOWN_ERROR_TTL: Duration = Duration::from_secs(3600);
/// Well-known cache entries kept before expired ones are purged.
const WELL_KNOWN_CACHE_MAX: usize = 10_000;

/// A boxed, sendable future (keeps [`DiscoveryBackend`] object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which step of the resolution produced a [`Target`] (for logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `[[route]]` entry.
    Route,
    /// The server name is an IP literal.
    IpLiteral,
    /// Hostname with explicit port (AAAA/A).
    ExplicitPort,
    /// `.well-known` delegation to an IP literal or to a name with explicit port.
    WellKnown,
    /// `.well-known` delegation, then SRV on the delegated name.
    WellKnownSrv,
    /// `.well-known` delegation without port or SRV: delegated name, port 8448.
    WellKnownDefaultPort,
    /// SRV `_matrix-fed._tcp` (or deprecated `_matrix._tcp`) on the server name.
    Srv,
    /// Nothing else: hostname, port 8448.
    DefaultPort,
}

/// Where and how to connect for a server name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Addresses to try, in order (non-empty).
    pub addrs: Vec<SocketAddr>,
    /// Name the certificate must be valid for; SNI unless it is an IP address (then no SNI).
    /// IP addresses are written without brackets.
    pub tls_name: String,
    /// Value of the `Host` header.
    pub host_header: String,
    /// How the target was found.
    pub via: Via,
}

/// An SRV record as returned by a [`DiscoveryBackend`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    /// Target host name (a trailing `.` is allowed; `.` alone means "no service").
    pub target: String,
    /// Port.
    pub port: u16,
    /// Lower is preferred.
    pub priority: u16,
    /// Higher is preferred among equal priorities.
    pub weight: u16,
}

/// A valid `/.well-known/matrix/server` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WellKnown {
    /// The `m.server` value (validated by the resolver, not by the backend).
    pub server: String,
    /// `Cache-Control: max-age` of the response, if any.
    pub max_age: Option<Duration>,
}

/// A backend failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The name has no such record (NXDOMAIN / empty answer) or no well-known document.
    #[error("not found")]
    NotFound,
    /// Any other failure (timeout, SERVFAIL, TLS, HTTP status, bad JSON, …).
    #[error("{0}")]
    Failed(String),
}

/// DNS and HTTPS for discovery. Object-safe so tests inject a fake.
pub trait DiscoveryBackend: Send + Sync {
    /// `GET https://<host>/.well-known/matrix/server`: `Ok` only for a 200 response whose body is
    /// a JSON object with a string `m.server`.
    fn well_known<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<WellKnown, BackendError>>;
    /// SRV records for `name` (e.g. `_matrix-fed._tcp.example.org`). No records: `Ok(vec![])`.
    fn srv<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<SrvRecord>, BackendError>>;
    /// AAAA and A records for `host`. No records: `Ok(vec![])` or `Err(NotFound)`.
    fn lookup_ip<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, BackendError>>;
}

impl From<crate::federation::server_name::ServerNameError> for DiscoveryError {
    fn from(e: crate::federation::server_name::ServerNameError) -> Self {
        DiscoveryError::InvalidServerName {
            name: e.name,
            reason: e.reason,
        }
    }
}

/// Discovery errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    /// Not a valid Matrix server name.
    #[error("invalid server name `{name}`: {reason}")]
    InvalidServerName {
        /// The input.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// Discovery is disabled and the name is neither routed nor an IP literal.
    #[error(
        "no route to `{0}`: not in the route table, not an IP literal, and discovery is disabled"
    )]
    NoRoute(String),
    /// The name (or every SRV target) has no addresses.
    #[error("no addresses found for `{0}`")]
    NoAddresses(String),
    /// A lone SRV record with target `.`.
    #[error("SRV `{0}` says the service is not available")]
    SrvUnavailable(String),
    /// A DNS lookup failed (not "no such record").
    #[error("DNS lookup of `{name}` failed: {reason}")]
    Dns {
        /// What was looked up.
        name: String,
        /// Why it failed.
        reason: String,
    },
    /// The resolver could not be built (e.g. unreadable `resolv.conf`).
    #[error("cannot set up DNS resolution: {0}")]
    Setup(String),
    /// Every address of the destination is one the guard does not connect to
    /// ([`DestinationPolicy`]).
    #[error("`{0}` resolves only to addresses the guard does not connect to")]
    DestinationRefused(String),
}

/// Which resolved addresses the guard may connect to (outbound federation and key fetches).
///
/// Refused by default: loopback, link-local, unspecified, multicast and broadcast addresses,
/// IPv4-mapped IPv6 forms included — a peer must not make the guard connect to the guard's own
/// host or its link (SSRF). Private ranges are allowed (classified networks use them
/// throughout) unless `deny_destinations` lists them. `allow_destinations` lifts a default
/// refusal; `[[route]]` targets are never checked (the operator named them).
#[derive(Debug, Clone)]
pub struct DestinationPolicy {
    allow: Vec<ipnet::IpNet>,
    deny: Vec<ipnet::IpNet>,
    /// No policy at all (resolver unit tests).
    off: bool,
}

impl DestinationPolicy {
    /// The default refusals plus `deny`, lifted by `allow`.
    pub fn new(allow: &[ipnet::IpNet], deny: &[ipnet::IpNet]) -> Self {
        let mut all: Vec<ipnet::IpNet> = [
            "127.0.0.0/8",
            "0.0.0.0/8",
            "169.254.0.0/16",
            "224.0.0.0/4",
            "255.255.255.255/32",
            "::1/128",
            "::/128",
            "fe80::/10",
            "ff00::/8",
        ]
        .iter()
        .map(|n| n.parse().expect("valid network"))
        .collect();
        all.extend_from_slice(deny);
        DestinationPolicy {
            allow: allow.to_vec(),
            deny: all,
            off: false,
        }
    }

    /// Whether the guard may connect to `ip`.
    pub fn allows(&self, ip: IpAddr) -> bool {
        if self.off {
            return true;
        }
        let ip = match ip {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        self.allow.iter().any(|n| n.contains(&ip)) || !self.deny.iter().any(|n| n.contains(&ip))
    }
}

/// Resolves destination server names: route table, then (if enabled) spec discovery.
pub struct ServerResolver {
    routes: HashMap<String, Route>,
    enabled: bool,
    destinations: DestinationPolicy,
    backend: Arc<dyn DiscoveryBackend>,
    well_known_cache: Mutex<HashMap<String, (Instant, Option<String>)>>,
}

impl fmt::Debug for ServerResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerResolver")
            .field("routes", &self.routes.len())
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// A backend for disabled discovery: never called, answers "not found" if it is.
struct NoBackend;

impl DiscoveryBackend for NoBackend {
    fn well_known<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<WellKnown, BackendError>> {
        Box::pin(async { Err(BackendError::NotFound) })
    }
    fn srv<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<SrvRecord>, BackendError>> {
        Box::pin(async { Err(BackendError::NotFound) })
    }
    fn lookup_ip<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, BackendError>> {
        Box::pin(async { Err(BackendError::NotFound) })
    }
}

impl ServerResolver {
    /// A resolver over `routes`; `discovery_enabled = false` limits it to routes and IP
    /// literals (the backend is then never called).
    pub fn new(
        routes: &[Route],
        discovery_enabled: bool,
        backend: Arc<dyn DiscoveryBackend>,
    ) -> Self {
        Self {
            routes: routes
                .iter()
                .map(|r| (r.server_name.to_ascii_lowercase(), r.clone()))
                .collect(),
            enabled: discovery_enabled,
            // The default refusals until `with_destinations` says otherwise.
            destinations: DestinationPolicy::new(&[], &[]),
            backend,
            well_known_cache: Mutex::new(HashMap::new()),
        }
    }

    /// Check resolved addresses against `policy` instead of the default refusals (the guard
    /// builds its resolvers with [`Self::from_parts`], from `[discovery]`).
    pub fn with_destinations(mut self, policy: DestinationPolicy) -> Self {
        self.destinations = policy;
        self
    }

    /// Routes and IP literals only; no backend.
    pub fn routes_only(routes: &[Route]) -> Self {
        Self::new(routes, false, Arc::new(NoBackend))
    }

    /// From the config's `[[route]]` and `[discovery]`; builds a [`SystemBackend`] (hickory,
    /// honouring `nameservers`) only if discovery is enabled. `tls` verifies well-known fetches.
    pub fn from_config(
        config: &Config,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<Self, DiscoveryError> {
        Self::from_parts(&config.routes, &config.discovery, tls)
    }

    /// As [`from_config`](Self::from_config), from the two sections.
    pub fn from_parts(
        routes: &[Route],
        discovery: &DiscoveryConfig,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<Self, DiscoveryError> {
        let policy =
            DestinationPolicy::new(&discovery.allow_destinations, &discovery.deny_destinations);
        if !discovery.enabled {
            return Ok(Self::routes_only(routes).with_destinations(policy));
        }
        let backend = SystemBackend::new(discovery, tls)?;
        Ok(Self::new(routes, true, Arc::new(backend)).with_destinations(policy))
    }

    /// The route-table target for `server_name`, if it has a `[[route]]` (no I/O).
    pub fn route(&self, server_name: &str) -> Option<Target> {
        let r = self.routes.get(&server_name.to_ascii_lowercase())?;
        let tls_name = r.tls_name.clone().unwrap_or_else(|| {
            ServerName::parse(&r.server_name)
                .map(|s| s.host_str())
                .unwrap_or_else(|_| r.server_name.clone())
        });
        Some(Target {
            addrs: vec![r.address],
            tls_name,
            host_header: server_name.to_owned(),
            via: Via::Route,
        })
    }

    /// Resolve a destination server name (see the module docs for the order).
    pub async fn resolve(&self, server_name: &str) -> Result<Target, DiscoveryError> {
        let mut t = self.resolve_at(server_name, Instant::now()).await?;
        if t.via != Via::Route {
            // Checked on the resolved addresses (a name that resolves to the guard's own host
            // is refused like the IP literal would be; a mixed answer keeps the allowed ones).
            t.addrs.retain(|a| self.destinations.allows(a.ip()));
            if t.addrs.is_empty() {
                return Err(DiscoveryError::DestinationRefused(server_name.to_owned()));
            }
        }
        Ok(t)
    }

    async fn resolve_at(&self, server_name: &str, now: Instant) -> Result<Target, DiscoveryError> {
        if let Some(t) = self.route(server_name) {
            return Ok(t);
        }
        let name = ServerName::parse(server_name)?;
        let hostname = match &name.host {
            Host::Ip(ip) => {
                return Ok(Target {
                    addrs: vec![SocketAddr::new(*ip, name.port_or_default())],
                    tls_name: ip.to_string(),
                    host_header: server_name.to_owned(),
                    via: Via::IpLiteral,
                })
            }
            Host::Name(h) => h.clone(),
        };
        if !self.enabled {
            return Err(DiscoveryError::NoRoute(server_name.to_owned()));
        }
        if let Some(port) = name.port {
            return Ok(Target {
                addrs: self.addresses(&hostname, port).await?,
                tls_name: hostname,
                host_header: server_name.to_owned(),
                via: Via::ExplicitPort,
            });
        }
        if let Some(delegated) = self.well_known(&hostname, now).await {
            return self.resolve_delegated(&delegated).await;
        }
        if let Some(addrs) = self.srv_addresses(&hostname).await? {
            return Ok(Target {
                addrs,
                tls_name: hostname.clone(),
                host_header: hostname,
                via: Via::Srv,
            });
        }
        Ok(Target {
            addrs: self.addresses(&hostname, DEFAULT_PORT).await?,
            tls_name: hostname.clone(),
            host_header: hostname,
            via: Via::DefaultPort,
        })
    }

    /// Step 3's sub-steps for a validated `m.server` value.
    async fn resolve_delegated(&self, delegated: &str) -> Result<Target, DiscoveryError> {
        let d = ServerName::parse(delegated)?;
        let host = match &d.host {
            Host::Ip(ip) => {
                return Ok(Target {
                    addrs: vec![SocketAddr::new(*ip, d.port_or_default())],
                    tls_name: ip.to_string(),
                    host_header: delegated.to_owned(),
                    via: Via::WellKnown,
                })
            }
            Host::Name(h) => h.clone(),
        };
        if let Some(port) = d.port {
            return Ok(Target {
                addrs: self.addresses(&host, port).await?,
                tls_name: host,
                host_header: delegated.to_owned(),
                via: Via::WellKnown,
            });
        }
        if let Some(addrs) = self.srv_addresses(&host).await? {
            return Ok(Target {
                addrs,
                tls_name: host.clone(),
                host_header: host,
                via: Via::WellKnownSrv,
            });
        }
        Ok(Target {
            addrs: self.addresses(&host, DEFAULT_PORT).await?,
            tls_name: host.clone(),
            host_header: host,
            via: Via::WellKnownDefaultPort,
        })
    }

    /// The delegated server name from `/.well-known/matrix/server`, cached; `None` when there is
    /// no valid delegation (then discovery goes on with SRV).
    async fn well_known(&self, hostname: &str, now: Instant) -> Option<String> {
        let key = hostname.to_ascii_lowercase();
        if let Some((expires, value)) = self.cache().get(&key) {
            if *expires > now {
                return value.clone();
            }
        }
        let (value, ttl) = match self.backend.well_known(hostname).await {
            Ok(wk) => match ServerName::parse(&wk.server) {
                Ok(_) => (
                    Some(wk.server),
                    wk.max_age
                        .unwrap_or(WELL_KNOWN_DEFAULT_TTL)
                        .min(WELL_KNOWN_MAX_TTL),
                ),
                Err(e) => {
                    tracing::debug!(%hostname, error = %e, "invalid m.server in well-known");
                    (None, WELL_KNOWN_ERROR_TTL)
                }
            },
            Err(e) => {
                tracing::debug!(%hostname, error = %e, "no well-known delegation");
                (None, WELL_KNOWN_ERROR_TTL)
            }
        };
        let mut cache = self.cache();
        if cache.len() >= WELL_KNOWN_CACHE_MAX {
            cache.retain(|_, (exp, _)| *exp > now);
            if cache.len() >= WELL_KNOWN_CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(key, (now + ttl, value.clone()));
        value
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Option<String>)>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.well_known_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// SRV `_matrix-fed._tcp.<host>`, then `_matrix._tcp.<host>`: `None` if neither has records.
    async fn srv_addresses(&self, host: &str) -> Result<Option<Vec<SocketAddr>>, DiscoveryError> {
        for prefix in ["_matrix-fed._tcp.", "_matrix._tcp."] {
            let name = format!("{prefix}{host}");
            let mut records = match self.backend.srv(&name).await {
                Ok(r) => r,
                Err(BackendError::NotFound) => Vec::new(),
                Err(BackendError::Failed(reason)) => {
                    return Err(DiscoveryError::Dns { name, reason })
                }
            };
            if records.is_empty() {
                continue;
            }
            if records.len() == 1 && matches!(records[0].target.as_str(), "." | "") {
                return Err(DiscoveryError::SrvUnavailable(name));
            }
            records.sort_by(|a, b| a.priority.cmp(&b.priority).then(b.weight.cmp(&a.weight)));
            let mut addrs = Vec::new();
            let mut last_err = None;
            for r in &records {
                let target = r.target.trim_end_matches('.');
                if target.is_empty() {
                    continue;
                }
                match self.addresses(target, r.port).await {
                    Ok(a) => addrs.extend(a),
                    Err(e) => last_err = Some(e),
                }
            }
            if addrs.is_empty() {
                return Err(last_err.unwrap_or(DiscoveryError::NoAddresses(name)));
            }
            return Ok(Some(addrs));
        }
        Ok(None)
    }

    /// AAAA/A for `host`, paired with `port`.
    async fn addresses(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, DiscoveryError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        match self.backend.lookup_ip(host).await {
            Ok(ips) if !ips.is_empty() => Ok(ips
                .into_iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect()),
            Ok(_) | Err(BackendError::NotFound) => {
                Err(DiscoveryError::NoAddresses(host.to_owned()))
            }
            Err(BackendError::Failed(reason)) => Err(DiscoveryError::Dns {
                name: host.to_owned(),
                reason,
            }),
        }
    }
}
