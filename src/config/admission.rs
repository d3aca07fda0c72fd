//! `[admission]`: what a connection or a request may hold before it is authenticated
//! (connection caps, timeouts, the byte budget of unauthenticated request bodies, key fetches
//! triggered by request heads); enforced by `proxy::admission`.
//!
//! ```toml
//! [admission]
//! # open connections on the inbound listener, in total and from one peer address
//! inbound_max_connections = 2048
//! inbound_max_connections_per_ip = 128
//! # open connections on the outbound listeners (proxy protocol and CONNECT together)
//! outbound_max_connections = 4096
//! outbound_max_connections_per_ip = 4096
//! # a request head must arrive within this time (every listener; also idle keep-alive)
//! header_timeout_ms = 30000
//! # a request body must arrive whole within this time from the end of its head
//! body_timeout_ms = 60000
//! # TLS handshakes (inbound, inside CONNECT tunnels) must complete within this time
//! tls_handshake_timeout_ms = 10000
//! # bytes of request bodies being read before their signature is verified, per direction
//! body_budget = 67108864
//! # … of which one origin (X-Matrix origin, else the peer address) may hold
//! body_budget_per_origin = 16777216
//! # key fetches for request heads whose origin key is not cached: at once, and new ones per
//! # second, over all servers (beyond: 503 with Retry-After, nothing fetched)
//! key_fetch_concurrency = 16
//! key_fetches_per_second = 20
//! ```
use serde::Deserialize;

/// `[admission]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct AdmissionConfig {
    /// Open connections on the inbound listener (default 2048).
    pub inbound_max_connections: usize,
    /// Open inbound connections from one peer address (default 128).
    pub inbound_max_connections_per_ip: usize,
    /// Open connections on the outbound listeners together (default 4096).
    pub outbound_max_connections: usize,
    /// Open outbound connections from one client address (default 4096: the clients are the
    /// protected homeservers, which open one connection or tunnel per destination).
    pub outbound_max_connections_per_ip: usize,
    /// Time for a request head, on every listener (default 30 000 ms).
    pub header_timeout_ms: u64,
    /// Time for a whole request body from the end of its head (default 60 000 ms).
    pub body_timeout_ms: u64,
    /// Time for a TLS handshake (default 10 000 ms).
    pub tls_handshake_timeout_ms: u64,
    /// Bytes of request bodies in flight before authentication, per direction
    /// (default 67 108 864 = 64 MiB).
    pub body_budget: usize,
    /// Bytes of that budget one origin may hold (default 16 777 216 = 16 MiB; at least
    /// `[limits] max_request_body`).
    pub body_budget_per_origin: usize,
    /// Key fetches for request heads in progress at once, over all servers (default 16).
    pub key_fetch_concurrency: usize,
    /// Key fetches for request heads started per second, over all servers (default 20; bursts
    /// up to this many).
    pub key_fetches_per_second: u32,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            inbound_max_connections: 2048,
            inbound_max_connections_per_ip: 128,
            outbound_max_connections: 4096,
            outbound_max_connections_per_ip: 4096,
            header_timeout_ms: 30_000,
            body_timeout_ms: 60_000,
            tls_handshake_timeout_ms: 10_000,
            body_budget: 64 << 20,
            body_budget_per_origin: 16 << 20,
            key_fetch_concurrency: 16,
            key_fetches_per_second: 20,
        }
    }
}

impl AdmissionConfig {
    /// Checks within the section and against `[limits] max_request_body`: `(key, message)`.
    pub fn check(&self, max_request_body: usize) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let positive: [(&'static str, u64); 9] = [
            (
                "inbound_max_connections",
                self.inbound_max_connections as u64,
            ),
            (
                "inbound_max_connections_per_ip",
                self.inbound_max_connections_per_ip as u64,
            ),
            (
                "outbound_max_connections",
                self.outbound_max_connections as u64,
            ),
            (
                "outbound_max_connections_per_ip",
                self.outbound_max_connections_per_ip as u64,
            ),
            ("header_timeout_ms", self.header_timeout_ms),
            ("body_timeout_ms", self.body_timeout_ms),
            ("tls_handshake_timeout_ms", self.tls_handshake_timeout_ms),
            ("key_fetch_concurrency", self.key_fetch_concurrency as u64),
            (
                "key_fetches_per_second",
                u64::from(self.key_fetches_per_second),
            ),
        ];
        for (key, v) in positive {
            if v == 0 {
                out.push((key, format!("`admission.{key}` must be greater than 0")));
            }
        }
        if self.inbound_max_connections_per_ip > self.inbound_max_connections {
            out.push((
                "inbound_max_connections_per_ip",
                "`admission.inbound_max_connections_per_ip` must not exceed `inbound_max_connections`"
                    .into(),
            ));
        }
        if self.outbound_max_connections_per_ip > self.outbound_max_connections {
            out.push((
                "outbound_max_connections_per_ip",
                "`admission.outbound_max_connections_per_ip` must not exceed `outbound_max_connections`"
                    .into(),
            ));
        }
        if self.body_budget_per_origin < max_request_body {
            out.push((
                "body_budget_per_origin",
                format!(
                    "`admission.body_budget_per_origin` ({}) must be at least `limits.max_request_body` ({max_request_body}), or the largest request could never be read",
                    self.body_budget_per_origin
                ),
            ));
        }
        if self.body_budget < self.body_budget_per_origin {
            out.push((
                "body_budget",
                "`admission.body_budget` must be at least `body_budget_per_origin`".into(),
            ));
        }
        out
    }
}
