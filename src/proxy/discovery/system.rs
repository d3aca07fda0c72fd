//! The real [`DiscoveryBackend`]: hickory-resolver for DNS, hyper 1 + tokio-rustls for the
//! `/.well-known/matrix/server` fetch.
//!
//! Design notes:
//! * Names are looked up as absolute names (trailing `.`), so `resolv.conf` search domains are
//!   never appended to a federation peer's name.
//! * The well-known fetch uses the caller's rustls `ClientConfig` (its roots decide what is
//!   trusted), forced to ALPN `http/1.1`. It resolves the host through the same hickory
//!   resolver, follows at most [`MAX_REDIRECTS`] redirects (https only, no revisits), reads at
//!   most [`MAX_WELL_KNOWN_BODY`] bytes and gives up after the timeout (default
//!   [`DEFAULT_WELL_KNOWN_TIMEOUT`]) for the whole exchange including redirects.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, NameServerConfigGroup, ResolverConfig,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{ResolveError, TokioResolver};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{BackendError, BoxFuture, DiscoveryBackend, DiscoveryError, SrvRecord, WellKnown};
use crate::config::DiscoveryConfig;

/// Largest accepted well-known body.
pub const MAX_WELL_KNOWN_BODY: usize = 64 * 1024;
/// Redirects followed for one well-known fetch.
pub const MAX_REDIRECTS: usize = 3;
/// Default timeout for one well-known fetch (all hops).
pub const DEFAULT_WELL_KNOWN_TIMEOUT: Duration = Duration::from_secs(10);

const WELL_KNOWN_PATH: &str = "/.well-known/matrix/server";

/// DNS through hickory-resolver, well-known over HTTPS.
pub struct SystemBackend {
    resolver: TokioResolver,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
    https_port: u16,
    /// Addresses the well-known fetch may connect to, redirect targets included (`[discovery]
    /// allow_destinations` / `deny_destinations`): a peer's server name must not make the guard
    /// fetch from its own host or link.
    destinations: super::DestinationPolicy,
}

impl std::fmt::Debug for SystemBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemBackend")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl SystemBackend {
    /// Build from `[discovery]`: `nameservers` (UDP and TCP to each) or, if empty, the system
    /// configuration (`/etc/resolv.conf`); the destination policy for well-known fetches. `tls` verifies the well-known servers.
    pub fn new(
        discovery: &DiscoveryConfig,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<Self, DiscoveryError> {
        let mut builder = if discovery.nameservers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| DiscoveryError::Setup(e.to_string()))?
        } else {
            let mut group = NameServerConfigGroup::new();
            for addr in &discovery.nameservers {
                group.push(NameServerConfig::new(*addr, Protocol::Udp));
                group.push(NameServerConfig::new(*addr, Protocol::Tcp));
            }
            TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, Vec::new(), group),
                TokioConnectionProvider::default(),
            )
        };
        // The spec asks for "AAAA or A": query both.
        builder.options_mut().ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        let mut tls = (*tls).clone();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            resolver: builder.build(),
            tls: Arc::new(tls),
            timeout: DEFAULT_WELL_KNOWN_TIMEOUT,
            https_port: 443,
            destinations: super::DestinationPolicy::new(
                &discovery.allow_destinations,
                &discovery.deny_destinations,
            ),
        })
    }

    /// Change the well-known fetch timeout.
    pub fn with_well_known_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Tests: fetch well-known from another port than 443.
    #[cfg(test)]
    pub(crate) fn with_https_port(mut self, port: u16) -> Self {
        self.https_port = port;
        self
    }

    async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, BackendError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        match self.resolver.lookup_ip(absolute(host)).await {
            Ok(l) => Ok(l.iter().collect()),
            Err(e) => Err(map_dns_error(e)),
        }
    }

    async fn fetch_well_known(&self, host: &str) -> Result<WellKnown, BackendError> {
        match tokio::time::timeout(self.timeout, self.follow(host)).await {
            Ok(r) => r,
            Err(_) => Err(BackendError::Failed("well-known fetch timed out".into())),
        }
    }

    /// GET the well-known URL, following bounded redirects.
    async fn follow(&self, host: &str) -> Result<WellKnown, BackendError> {
        let mut url = (host.to_owned(), self.https_port, WELL_KNOWN_PATH.to_owned());
        let mut seen = HashSet::new();
        for _ in 0..=MAX_REDIRECTS {
            if !seen.insert(url.clone()) {
                return Err(BackendError::Failed("redirect loop".into()));
            }
            let (status, headers, body) = self.get(&url.0, url.1, &url.2).await?;
            if status.is_redirection() {
                let location = headers
                    .get(http::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| BackendError::Failed(format!("{status} without Location")))?;
                url = redirect_target(&url, location)?;
                continue;
            }
            if status != http::StatusCode::OK {
                return Err(BackendError::Failed(format!("status {status}")));
            }
            let json: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| BackendError::Failed(format!("invalid JSON: {e}")))?;
            let server = json
                .get("m.server")
                .and_then(|v| v.as_str())
                .ok_or_else(|| BackendError::Failed("no string `m.server`".into()))?;
            return Ok(WellKnown {
                server: server.to_owned(),
                max_age: max_age(&headers),
            });
        }
        Err(BackendError::Failed("too many redirects".into()))
    }

    /// One HTTPS GET; returns status, headers and the (size-limited) body.
    async fn get(
        &self,
        host: &str,
        port: u16,
        path: &str,
    ) -> Result<(http::StatusCode, http::HeaderMap, Bytes), BackendError> {
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            BackendError::Failed(format!("{what} {host}:{port}: {e}"))
        };
        let all = self.ips(host).await?;
        let ips: Vec<IpAddr> = all
            .iter()
            .copied()
            .filter(|ip| self.destinations.allows(*ip))
            .collect();
        if ips.is_empty() && !all.is_empty() {
            return Err(BackendError::Failed(format!(
                "{host} resolves only to addresses the guard does not connect to"
            )));
        }
        let mut tcp = None;
        let mut last = None;
        for ip in ips {
            match TcpStream::connect(SocketAddr::new(ip, port)).await {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let tcp = tcp.ok_or_else(|| match last {
            Some(e) => failed("connect", &e),
            None => BackendError::NotFound,
        })?;
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| failed("TLS name", &e))?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| failed("TLS", &e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| failed("HTTP", &e))?;
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        let authority = match (host.parse::<IpAddr>(), port) {
            (Ok(IpAddr::V6(ip)), 443) => format!("[{ip}]"),
            (Ok(IpAddr::V6(ip)), p) => format!("[{ip}]:{p}"),
            (_, 443) => host.to_owned(),
            (_, p) => format!("{host}:{p}"),
        };
        let req = http::Request::get(path)
            .header(http::header::HOST, authority)
            .header(http::header::USER_AGENT, "grenzwacht")
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| failed("request", &e))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| failed("HTTP", &e))?;
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, MAX_WELL_KNOWN_BODY)
            .collect()
            .await
            .map_err(|e| failed("body", &e))?
            .to_bytes();
        conn.abort();
        Ok((parts.status, parts.headers, body))
    }
}

impl DiscoveryBackend for SystemBackend {
    fn well_known<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<WellKnown, BackendError>> {
        Box::pin(self.fetch_well_known(host))
    }

    fn srv<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<SrvRecord>, BackendError>> {
        Box::pin(async move {
            match self.resolver.srv_lookup(absolute(name)).await {
                Ok(l) => Ok(l
                    .iter()
                    .map(|r| SrvRecord {
                        target: r.target().to_utf8(),
                        port: r.port(),
                        priority: r.priority(),
                        weight: r.weight(),
                    })
                    .collect()),
                Err(e) => match map_dns_error(e) {
                    BackendError::NotFound => Ok(Vec::new()),
                    other => Err(other),
                },
            }
        })
    }

    fn lookup_ip<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, BackendError>> {
        Box::pin(self.ips(host))
    }
}

/// `host` as an absolute DNS name.
fn absolute(host: &str) -> String {
    if host.ends_with('.') {
        host.to_owned()
    } else {
        format!("{host}.")
    }
}

fn map_dns_error(e: ResolveError) -> BackendError {
    if e.is_no_records_found() || e.is_nx_domain() {
        BackendError::NotFound
    } else {
        BackendError::Failed(e.to_string())
    }
}

/// Resolve a `Location` against the current `(host, port, path)`: https only.
fn redirect_target(
    current: &(String, u16, String),
    location: &str,
) -> Result<(String, u16, String), BackendError> {
    if location.starts_with('/') && !location.starts_with("//") {
        return Ok((current.0.clone(), current.1, location.to_owned()));
    }
    let uri: http::Uri = location
        .parse()
        .map_err(|_| BackendError::Failed(format!("bad redirect `{location}`")))?;
    if uri.scheme_str() != Some("https") {
        return Err(BackendError::Failed(format!(
            "refusing non-https redirect `{location}`"
        )));
    }
    let auth = uri
        .authority()
        .ok_or_else(|| BackendError::Failed(format!("bad redirect `{location}`")))?;
    let host = auth
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".to_owned());
    Ok((host, auth.port_u16().unwrap_or(443), path))
}

/// `Cache-Control: max-age=N` (`no-store` / `no-cache` count as 0).
pub(crate) fn max_age(headers: &http::HeaderMap) -> Option<Duration> {
    let mut result = None;
    for value in headers.get_all(http::header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let directive = directive.trim();
            let lower = directive.to_ascii_lowercase();
            if lower == "no-store" || lower == "no-cache" {
                return Some(Duration::ZERO);
            }
            if let Some(n) = lower.strip_prefix("max-age=") {
                if let Ok(n) = n.trim_matches('"').parse::<u64>() {
                    result = Some(Duration::from_secs(n));
                }
            }
        }
    }
    result
}
