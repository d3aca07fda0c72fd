//! `[audit]`: the tamper-evident audit log (`crate::audit`).
//!
//! ```toml
//! [audit]
//! dir = "/var/lib/grenzwacht/audit"     # segment files audit-<first seq>.log
//! key_file = "/etc/grenzwacht/audit.key" # ed25519 key that signs checkpoints
//! # durability = "group"                 # or "fsync": one fsync per append
//! # segment_max_bytes = 67108864         # rotate a segment at this size …
//! # segment_max_age_secs = 86400         # … or at this age
//! # retention_days = 0                   # delete segments older than this (0 = keep)
//! # retention_max_bytes = 0              # delete oldest segments beyond this total (0 = keep)
//! # checkpoint_interval_secs = 60        # signed checkpoint cadence (and at shutdown)
//! # store_content = false                # full event content in decision records
//!
//! [audit.syslog]                         # live forwarding, RFC 5424 over TLS (RFC 5425)
//! address = "127.0.0.1:6514"
//! ca_file = "/etc/grenzwacht/siem-ca.crt"
//! # server_name = "siem.example"         # TLS name (default: the host of `address`)
//! # client_cert = "…" ; client_key = "…" # client certificate, both or neither
//! # forward = "all"                      # or "checkpoints"
//! # queue = 10000                        # records waiting for the collector; beyond: dropped
//! ```
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// When an append is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// A writer thread writes what is queued as one batch and fsyncs once; every append of
    /// the batch resolves after that fsync (default).
    #[default]
    Group,
    /// Every append (one record, or one `append_all` batch) is written and fsynced alone.
    Fsync,
}

impl Durability {
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Group => "group",
            Durability::Fsync => "fsync",
        }
    }
}

/// What goes to the syslog collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Forward {
    /// Every record (default).
    #[default]
    All,
    /// Checkpoint records only (the anchor against a cut tail).
    Checkpoints,
}

/// `[audit]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct AuditConfig {
    /// Directory of the segment files (created if missing).
    pub dir: PathBuf,
    /// ed25519 key (Synapse `signing.key` format) that signs checkpoints.
    pub key_file: PathBuf,
    pub durability: Durability,
    /// Rotate the current segment when it reaches this many bytes (default 64 MiB).
    pub segment_max_bytes: u64,
    /// Rotate the current segment when it is this old (default 86 400 s; 0 = by size only).
    pub segment_max_age_secs: u64,
    /// Delete closed segments whose last write is older than this many days (0 = keep).
    pub retention_days: u64,
    /// Delete the oldest closed segments while all segments together exceed this (0 = keep).
    pub retention_max_bytes: u64,
    /// Seconds between signed checkpoints (default 60); one is also written at start and
    /// shutdown.
    pub checkpoint_interval_secs: u64,
    /// Store full event content in decision records (default `false`: hashes and masked
    /// excerpts only).
    pub store_content: bool,
    /// `[audit.syslog]`: live forwarding to a collector. `None`: off.
    pub syslog: Option<SyslogConfig>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::new(),
            key_file: PathBuf::new(),
            durability: Durability::Group,
            segment_max_bytes: 64 << 20,
            segment_max_age_secs: 86_400,
            retention_days: 0,
            retention_max_bytes: 0,
            checkpoint_interval_secs: 60,
            store_content: false,
            syslog: None,
        }
    }
}

/// `[audit.syslog]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct SyslogConfig {
    /// Collector `host:port` (RFC 5425 port 6514).
    pub address: String,
    /// TLS name the collector's certificate must carry (default: the host of `address`).
    pub server_name: Option<String>,
    /// CA certificates (PEM) the collector's certificate must chain to.
    pub ca_file: PathBuf,
    /// Client certificate (PEM chain) and key for mutual TLS; both or neither.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub forward: Forward,
    /// Records waiting for the collector (default 10 000); beyond, records are dropped from
    /// the forwarding (never from the local log) and counted.
    pub queue: usize,
}

impl Default for SyslogConfig {
    fn default() -> Self {
        Self {
            address: String::new(),
            server_name: None,
            ca_file: PathBuf::new(),
            client_cert: None,
            client_key: None,
            forward: Forward::All,
            queue: 10_000,
        }
    }
}

/// Smallest `segment_max_bytes`.
pub const MIN_SEGMENT_BYTES: u64 = 4096;

impl AuditConfig {
    /// Checks within the section: `(key path below [audit], message)`.
    pub fn check(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.dir.as_os_str().is_empty() {
            out.push(("dir", "`audit.dir` must be set".into()));
        }
        if self.key_file.as_os_str().is_empty() {
            out.push((
                "key_file",
                "`audit.key_file` must be set (create one with `grenzwacht keys generate --kind audit --out FILE`)"
                    .into(),
            ));
        }
        if self.segment_max_bytes < MIN_SEGMENT_BYTES {
            out.push((
                "segment_max_bytes",
                format!("`audit.segment_max_bytes` must be at least {MIN_SEGMENT_BYTES}"),
            ));
        }
        if self.checkpoint_interval_secs == 0 {
            out.push((
                "checkpoint_interval_secs",
                "`audit.checkpoint_interval_secs` must be greater than 0".into(),
            ));
        }
        if let Some(s) = &self.syslog {
            if s.address.is_empty() {
                out.push((
                    "syslog.address",
                    "`audit.syslog.address` must be set".into(),
                ));
            } else if split_host_port(&s.address).is_none() {
                out.push((
                    "syslog.address",
                    format!("`audit.syslog.address` `{}` is not host:port", s.address),
                ));
            }
            if s.ca_file.as_os_str().is_empty() {
                out.push((
                    "syslog.ca_file",
                    "`audit.syslog.ca_file` must be set".into(),
                ));
            }
            if s.client_cert.is_some() != s.client_key.is_some() {
                out.push((
                    "syslog.client_cert",
                    "set both `audit.syslog.client_cert` and `audit.syslog.client_key`, or neither"
                        .into(),
                ));
            }
            if s.queue == 0 {
                out.push((
                    "syslog.queue",
                    "`audit.syslog.queue` must be greater than 0".into(),
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
        fix(&mut self.dir);
        fix(&mut self.key_file);
        if let Some(s) = &mut self.syslog {
            fix(&mut s.ca_file);
            s.client_cert.as_mut().map(fix);
            s.client_key.as_mut().map(fix);
        }
    }
}

/// `host:port` → (host without brackets, port).
pub fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 {
        return None;
    }
    Some((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn parses_with_defaults_and_resolves_paths() {
        let c = Config::from_str(
            "[audit]\ndir = \"audit\"\nkey_file = \"/k/audit.key\"\n[audit.syslog]\naddress = \"127.0.0.1:6514\"\nca_file = \"ca.crt\"\n",
            "/etc/gw/g.toml",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let a = c.audit.unwrap();
        assert_eq!(a.dir, Path::new("/etc/gw/audit"));
        assert_eq!(a.key_file, Path::new("/k/audit.key"));
        assert_eq!(a.durability, Durability::Group);
        assert_eq!(a.checkpoint_interval_secs, 60);
        assert!(!a.store_content);
        let s = a.syslog.unwrap();
        assert_eq!(s.ca_file, Path::new("/etc/gw/ca.crt"));
        assert_eq!((s.forward, s.queue), (Forward::All, 10_000));
        assert!(Config::from_str("", "g.toml").unwrap().audit.is_none());
    }

    #[test]
    fn errors_name_the_key_and_line() {
        let text = "[audit]\ndir = \"a\"\nkey_file = \"k\"\ndurability = \"sometimes\"\nfsync = true\n[audit.syslog]\nadress = \"x\"\n";
        let errs = Config::from_str(text, "g.toml").unwrap_err().to_string();
        for want in [
            "g.toml:4:14: invalid value for `audit.durability`: unknown variant `sometimes`",
            "g.toml:5:1: unknown key `audit.fsync`",
            "g.toml:7:1: unknown key `audit.syslog.adress`",
        ] {
            assert!(errs.contains(want), "missing {want:?} in:\n{errs}");
        }
        let text = "[audit]\ndir = \"a\"\nkey_file = \"k\"\nsegment_max_bytes = 10\ncheckpoint_interval_secs = 0\n[audit.syslog]\nca_file = \"c\"\nclient_cert = \"c.crt\"\nqueue = 0\n";
        let errs = Config::from_str(text, "g.toml").unwrap_err().to_string();
        for want in [
            "g.toml:4:21: `audit.segment_max_bytes` must be at least 4096",
            "g.toml:5:28: `audit.checkpoint_interval_secs` must be greater than 0",
            "`audit.syslog.address` must be set",
            "g.toml:8:15: set both `audit.syslog.client_cert` and `audit.syslog.client_key`",
            "g.toml:9:9: `audit.syslog.queue` must be greater than 0",
        ] {
            assert!(errs.contains(want), "missing {want:?} in:\n{errs}");
        }
        let errs = Config::from_str("[audit]\ndir = \"a\"\n", "g.toml")
            .unwrap_err()
            .to_string();
        assert!(errs.contains("`audit.key_file` must be set"), "{errs}");
    }

    #[test]
    fn host_port() {
        assert_eq!(
            split_host_port("127.0.0.1:6514"),
            Some(("127.0.0.1".into(), 6514))
        );
        assert_eq!(split_host_port("[::1]:6514"), Some(("::1".into(), 6514)));
        assert_eq!(split_host_port("siem.example"), None);
        assert_eq!(split_host_port("siem.example:0"), None);
    }
}
