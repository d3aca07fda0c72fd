//! `[split]`: this guard is one half of a split appliance (`crate::split`).
//!
//! ```toml
//! [split]
//! half = "high"                 # or "low"; `grenzwacht serve --half` must name the same
//! request_timeout_ms = 60000    # an answer from the other half must arrive within this
//! max_pending = 256             # requests waiting for the other half, each way
//! heartbeat_ms = 1000
//! verifier = "reference"        # or "simulated-card": received frames pass the card model first
//!
//! [split.send]                  # the one-way link this half sends on
//! kind = "udp"                  # or "tcp"
//! address = "10.0.0.2:7400"     # udp: where datagrams go; tcp: where to connect
//! mtu = 1500                    # udp: datagram size + 28 (both ends the same)
//! repair_percent = 10           # udp: RaptorQ repair symbols per block (both ends the same)
//! rate_mbps = 800               # udp: pacing (optional)
//!
//! [split.receive]               # the one-way link this half receives on
//! kind = "udp"
//! address = "0.0.0.0:7401"      # udp: bind; tcp: listen
//! ```
use std::net::SocketAddr;

use serde::Deserialize;

/// Which half.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HalfName {
    High,
    Low,
}

impl HalfName {
    /// `high` / `low`, as in the config and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            HalfName::High => "high",
            HalfName::Low => "low",
        }
    }
}

/// The carrier of one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    /// One-way UDP with RaptorQ forward error correction (`diode::udp`).
    Udp,
    /// Frames back to back over TCP; the receiver never writes (`diode::tcp`).
    Tcp,
}

/// What checks received frames before the reference verifier does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerifierKind {
    /// The Rust reference verifier only.
    #[default]
    Reference,
    /// The software model of the frame verifier card (`hw/REGISTERS.md`), then the reference.
    SimulatedCard,
}

/// `[split.send]` / `[split.receive]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LinkEndConfig {
    pub kind: LinkKind,
    /// Send: where datagrams go (udp) or where to connect (tcp). Receive: where to bind (udp) or
    /// listen (tcp).
    pub address: SocketAddr,
    /// UDP: the link MTU (datagrams are `mtu − 28` bytes). Default 1500.
    #[serde(default = "default_mtu")]
    pub mtu: u16,
    /// UDP: repair symbols per source block, percent. Default 10.
    #[serde(default = "default_repair")]
    pub repair_percent: u32,
    /// UDP sender: pacing in Mbit/s. Default: unpaced.
    #[serde(default)]
    pub rate_mbps: Option<u64>,
}

fn default_mtu() -> u16 {
    1500
}
fn default_repair() -> u32 {
    10
}

/// `[split]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SplitConfig {
    pub half: HalfName,
    #[serde(default = "default_timeout")]
    pub request_timeout_ms: u64,
    #[serde(default = "default_pending")]
    pub max_pending: usize,
    #[serde(default = "default_heartbeat")]
    pub heartbeat_ms: u64,
    #[serde(default)]
    pub verifier: VerifierKind,
    pub send: LinkEndConfig,
    pub receive: LinkEndConfig,
}

fn default_timeout() -> u64 {
    60_000
}
fn default_pending() -> usize {
    256
}
fn default_heartbeat() -> u64 {
    1_000
}

impl SplitConfig {
    /// Value checks: `(key, message)` pairs.
    pub fn check(&self) -> Vec<(&'static str, String)> {
        let mut e = Vec::new();
        if self.request_timeout_ms == 0 {
            e.push(("request_timeout_ms", "must be at least 1".to_string()));
        }
        if self.max_pending == 0 {
            e.push(("max_pending", "must be at least 1".to_string()));
        }
        if self.heartbeat_ms < 10 {
            e.push(("heartbeat_ms", "must be at least 10".to_string()));
        }
        for (key, end) in [("send", &self.send), ("receive", &self.receive)] {
            if end.kind == LinkKind::Udp && !(576..=65_535).contains(&end.mtu) {
                e.push((
                    if key == "send" {
                        "send.mtu"
                    } else {
                        "receive.mtu"
                    },
                    "must be between 576 and 65535".to_string(),
                ));
            }
            if end.repair_percent > 100 {
                e.push((
                    if key == "send" {
                        "send.repair_percent"
                    } else {
                        "receive.repair_percent"
                    },
                    "must be at most 100".to_string(),
                ));
            }
        }
        e
    }
}
