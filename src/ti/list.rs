//! The federation list's payload: `{"version", "domainList": [{"domain", "telematikID",
//! "isInsurance", "ik"|"iks", "timAnbieter"?}]}`, parsed leniently.
//!
//! Leniency: `version` is a number or a string of digits; unknown keys are ignored;
//! `telematikID` may be missing; `isInsurance` may be missing (false) or a `"true"`/`"false"`
//! string; `ik`/`iks` is a string or an array of strings; `timAnbieter` may be missing or null.
//! An entry that is not an object, has no usable `domain` or an `isInsurance` that is neither a
//! boolean nor `"true"`/`"false"` is skipped and counted ([`FederationList::skipped`]): its
//! domain is then not listed (fail closed). A payload that is not an object, has no usable
//! `version` or no `domainList` array is an error.
//!
//! Entries are keyed by [`domain_of`] of the domain the list writes. A domain listed more than
//! once (gematik's test list has one three times) keeps its first entry, with `isInsurance`
//! true if any of its entries says so (the stricter reading for the ePA rule) and the `ik`
//! values of all of them; [`FederationList::entry_count`] counts the entries as written.
use std::collections::HashMap;

use serde_json::Value;

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
    /// Entries of `domainList` that were not usable (see the module doc).
    skipped: usize,
    /// Usable entries of `domainList`, duplicates included.
    entry_count: usize,
}

impl FederationList {
    /// Parses the JWS payload (JSON) leniently.
    pub fn parse_payload(json: &[u8]) -> Result<FederationList, PayloadError> {
        let value: Value =
            serde_json::from_slice(json).map_err(|e| PayloadError(format!("not JSON ({e})")))?;
        FederationList::from_value(&value)
    }

    /// Reads an already parsed payload (same rules as [`FederationList::parse_payload`]).
    pub fn from_value(value: &Value) -> Result<FederationList, PayloadError> {
        let obj = value
            .as_object()
            .ok_or_else(|| PayloadError("not a JSON object".into()))?;
        let version = match obj.get("version") {
            Some(Value::Number(n)) => n
                .as_u64()
                .ok_or_else(|| PayloadError("version is not a non-negative integer".into()))?,
            Some(Value::String(s)) => s
                .trim()
                .parse::<u64>()
                .map_err(|_| PayloadError("version is not a number".into()))?,
            Some(_) => return Err(PayloadError("version is not a number".into())),
            None => return Err(PayloadError("version is missing".into())),
        };
        let list = match obj.get("domainList") {
            Some(Value::Array(a)) => a,
            Some(_) => return Err(PayloadError("domainList is not an array".into())),
            None => return Err(PayloadError("domainList is missing".into())),
        };
        let mut entries = HashMap::with_capacity(list.len());
        let mut skipped = 0;
        let mut entry_count = 0;
        for item in list {
            let Some(entry) = parse_entry(item) else {
                skipped += 1;
                continue;
            };
            entry_count += 1;
            match entries.entry(domain_of(&entry.domain)) {
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(entry);
                }
                std::collections::hash_map::Entry::Occupied(mut o) => {
                    let first: &mut ListEntry = o.get_mut();
                    first.is_insurance |= entry.is_insurance;
                    for ik in entry.ik {
                        if !first.ik.contains(&ik) {
                            first.ik.push(ik);
                        }
                    }
                }
            }
        }
        Ok(FederationList {
            version,
            entries,
            skipped,
            entry_count,
        })
    }

    /// The entry for a server name (`host[:port]`), matched case-insensitively without port.
    pub fn lookup(&self, server_name: &str) -> Option<&ListEntry> {
        self.entries.get(&domain_of(server_name))
    }
    /// Distinct listed domains.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// The listed domains (as [`domain_of`] gives them), in no particular order.
    pub fn domains(&self) -> impl Iterator<Item = &str> + '_ {
        self.entries.keys().map(String::as_str)
    }
    /// The entries, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = &ListEntry> + '_ {
        self.entries.values()
    }
    /// Usable `domainList` entries as written, a domain listed twice counted twice.
    pub fn entry_count(&self) -> usize {
        self.entry_count
    }
    /// How many `domainList` entries were skipped as unusable.
    pub fn skipped(&self) -> usize {
        self.skipped
    }
}

fn parse_entry(item: &Value) -> Option<ListEntry> {
    let obj = item.as_object()?;
    let domain = obj.get("domain")?.as_str()?.trim();
    if domain_of(domain).is_empty() {
        return None;
    }
    let is_insurance = match obj.get("isInsurance") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
        Some(_) => return None,
    };
    let mut ik = Vec::new();
    for key in ["ik", "iks"] {
        match obj.get(key) {
            Some(Value::String(s)) => ik.push(s.clone()),
            Some(Value::Array(a)) => {
                ik.extend(a.iter().filter_map(|v| v.as_str()).map(str::to_owned))
            }
            _ => {}
        }
    }
    let text = |key: &str| obj.get(key).and_then(Value::as_str).map(str::to_owned);
    Some(ListEntry {
        domain: domain.to_owned(),
        telematik_id: text("telematikID"),
        is_insurance,
        ik,
        tim_anbieter: text("timAnbieter"),
    })
}

/// The domain of a server name: host without port, ASCII-lowercased, a trailing dot removed
/// (IPv6 literals keep their brackets: `[::1]:8448` → `[::1]`).
pub fn domain_of(server_name: &str) -> String {
    let s = server_name.trim();
    let host = if s.starts_with('[') {
        match s.find(']') {
            Some(i) => &s[..=i],
            None => s,
        }
    } else {
        match s.split_once(':') {
            // one colon: host:port; several: an IPv6 literal without brackets, kept whole
            Some((h, rest)) if !rest.contains(':') => h,
            _ => s,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    host.to_ascii_lowercase()
}

#[cfg(test)]
mod tests;
