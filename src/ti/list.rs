//! The federation list's payload: `{"version", "domainList": [{"domain", "telematikID",
//! "isInsurance", "ik"|"iks", "timAnbieter"?}]}`, parsed leniently.
//! Owner: helper `ti-pki`.
use std::collections::HashMap;

/// A payload that cannot be read as a federation list.
#[derive(Debug, thiserror::Error)]
#[error("federation list payload: {0}")]
pub struct PayloadError(pub String);

/// One listed homeserver domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// As the list writes it.
    pub domain: String,
    pub telematik_id: Option<String>,
    pub is_insurance: bool,
    /// `ik` / `iks` values.
    pub ik: Vec<String>,
    pub tim_anbieter: Option<String>,
}

/// A verified federation list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederationList {
    pub version: u64,
    /// Keyed by [`domain_of`] of the entry's domain.
    entries: HashMap<String, ListEntry>,
}

impl FederationList {
    /// Parses the JWS payload (JSON) leniently.
    pub fn parse_payload(_json: &[u8]) -> Result<FederationList, PayloadError> {
        Err(PayloadError("not implemented".into()))
    }
    /// The entry for a server name (`host[:port]`), matched case-insensitively without port.
    pub fn lookup(&self, server_name: &str) -> Option<&ListEntry> {
        self.entries.get(&domain_of(server_name))
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The domain of a server name: host without port, lowercased (IPv6 literals keep brackets).
pub fn domain_of(server_name: &str) -> String {
    server_name.to_ascii_lowercase()
}
