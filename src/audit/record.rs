//! The record kinds and their typed builders. Field names are the documented ones
//! (`deploy/AUDIT-FORMAT.md`); optional fields are left out of the record when `None`.
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The kind of a record (`"kind"`). A file with any other kind fails `verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Decision,
    Refusal,
    Load,
    Admin,
    Review,
    Notice,
    Media,
    Checkpoint,
    Startup,
    Shutdown,
}

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::Decision,
        Kind::Refusal,
        Kind::Load,
        Kind::Admin,
        Kind::Review,
        Kind::Notice,
        Kind::Media,
        Kind::Checkpoint,
        Kind::Startup,
        Kind::Shutdown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Decision => "decision",
            Kind::Refusal => "refusal",
            Kind::Load => "load",
            Kind::Admin => "admin",
            Kind::Review => "review",
            Kind::Notice => "notice",
            Kind::Media => "media",
            Kind::Checkpoint => "checkpoint",
            Kind::Startup => "startup",
            Kind::Shutdown => "shutdown",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One record to append: its kind and its `data` object. Built from the typed structs below
/// (`Record::from(DecisionRecord { … })`); `seq`, `ts`, `prev` and `hash` are added by the
/// auditor when it writes the record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    kind: Kind,
    data: Map<String, Value>,
}

impl Record {
    pub fn kind(&self) -> Kind {
        self.kind
    }
    pub fn data(&self) -> &Map<String, Value> {
        &self.data
    }
    pub(crate) fn into_parts(self) -> (Kind, Map<String, Value>) {
        (self.kind, self.data)
    }
    fn typed<T: Serialize>(kind: Kind, v: &T) -> Record {
        let data = match serde_json::to_value(v) {
            Ok(Value::Object(m)) => m,
            // The typed structs below always serialise to objects.
            _ => Map::new(),
        };
        Record { kind, data }
    }
}

/// The unit a decision is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// A PDU inside a transaction.
    Pdu,
    /// An EDU inside a transaction (to-device, typing, receipts, …).
    Edu,
    /// An event in a response (backfill, state, event fetch), or a non-PDU event (stripped
    /// state, templates).
    Event,
    /// One recipient device's message of a to-device EDU.
    ToDevice,
    /// A user-data field of a response (profile, device, directory).
    Field,
}

/// Which way the traffic flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Remote → protected.
    Inbound,
    /// Protected → remote.
    Outbound,
}

/// What the guard did with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Allow,
    Redact,
    Hold,
    Reject,
    Drop,
    Withhold,
    /// Not judged: the exchange was refused before the policy came to this unit.
    Unjudged,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Redact => "redact",
            Verdict::Hold => "hold",
            Verdict::Reject => "reject",
            Verdict::Drop => "drop",
            Verdict::Withhold => "withhold",
            Verdict::Unjudged => "unjudged",
        }
    }
}

/// A matched rule: rule id, the field it matched in, and a masked excerpt around the match
/// (never the matched text in clear; the caller masks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleMatch {
    pub rule: String,
    pub field: String,
    pub excerpt: String,
}

/// `decision`: what the guard decided about one PDU, EDU or event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub unit: Unit,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub txn_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    pub origin: String,
    pub destination: String,
    pub direction: Direction,
    /// The federation endpoint (path template or path without query).
    pub endpoint: String,
    pub verdict: Verdict,
    /// What happened to the unit's bytes: `crossed`, `redacted`, `withheld`, `held`,
    /// `queued`, `dropped`, `refused`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
    pub rules: Vec<RuleMatch>,
    /// The effective label as a display marking.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The receiving side's clearance as a display string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clearance: Option<String>,
    /// Fingerprint of the rule set that decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_hash: Option<String>,
    /// Hex SHA-256 of the unit's content as received (see [`super::content_sha256`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_sha256: Option<String>,
    /// The full content; written only with `[audit] store_content = true`, dropped otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Value>,
}

/// `media`: what the guard decided about one file (a media download or thumbnail).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaRecord {
    /// `mxc://<server_name>/<media_id>`
    pub media: String,
    /// The federation endpoint (catalog id).
    pub endpoint: String,
    pub origin: String,
    pub destination: String,
    /// The direction the file's bytes flow.
    pub direction: Direction,
    /// `release` or `refuse`.
    pub verdict: String,
    /// Why it was refused (`crate::media::MediaReason`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Every finding: `{rule, field, excerpt}` with `field` the place in the file (archive
    /// entry path; empty for the file itself) and `excerpt` a masked excerpt or a short reason.
    pub rules: Vec<RuleMatch>,
    /// The file type from its bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Hex SHA-256 of the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The events that reference the media (from the guard's mxc index).
    pub events: Vec<String>,
    /// Whether the file is an encrypted attachment (judged by its events, not its bytes).
    #[serde(default)]
    pub encrypted: bool,
    /// The verdict came from the verdict cache (same file, policy, direction, destination).
    #[serde(default)]
    pub cached: bool,
    /// Fingerprint of the rule set that decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_hash: Option<String>,
}

/// `refusal`: a request the guard refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusalRecord {
    pub status: u16,
    pub errcode: String,
    /// The bounded reason label (as in `grenzwacht_refusals_total`).
    pub reason: String,
    pub method: String,
    /// The requested path (without query).
    pub path: String,
    /// The X-Matrix origin, if authenticated or claimed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// The peer address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    pub direction: Direction,
}

/// What a `load` record reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadChange {
    Start,
    Reload,
    FailedReload,
}

/// A SPIF by name and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedHash {
    pub name: String,
    pub sha256: String,
}

/// `load`: the configuration and policy in force (or a reload that failed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadRecord {
    pub change: LoadChange,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules_hash: Option<String>,
    pub spifs: Vec<NamedHash>,
    /// Why a reload failed (no payload, no secrets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `admin`: an action on the admin listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminRecord {
    /// Principal name (`None`: unauthenticated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    pub action: String,
    pub target: String,
    pub outcome: String,
}

/// `review`: a reviewer's decision on a held event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewRecord {
    pub principal: String,
    pub hold_id: i64,
    pub event_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_id: Option<String>,
    /// `release` or `reject` (or `timeout_release` / `timeout_reject` for the default decision).
    pub decision: String,
    pub reason: String,
    /// `off`, `awaiting_second` or `complete`.
    pub four_eyes: String,
}

/// `notice`: a sender notice that was sent (what, to whom; never matched content).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeRecord {
    pub recipient: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_id: Option<String>,
    /// `redacted`, `held`, `rejected`, `released`.
    pub what: String,
}

macro_rules! into_record {
    ($($t:ty => $k:expr),* $(,)?) => {$(
        impl From<$t> for Record {
            fn from(v: $t) -> Record {
                Record::typed($k, &v)
            }
        }
        impl From<&$t> for Record {
            fn from(v: &$t) -> Record {
                Record::typed($k, v)
            }
        }
    )*};
}

into_record!(
    DecisionRecord => Kind::Decision,
    RefusalRecord => Kind::Refusal,
    LoadRecord => Kind::Load,
    AdminRecord => Kind::Admin,
    ReviewRecord => Kind::Review,
    NoticeRecord => Kind::Notice,
    MediaRecord => Kind::Media,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_unknown_is_none() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
            assert_eq!(
                serde_json::to_value(k).unwrap(),
                Value::String(k.as_str().into())
            );
        }
        assert_eq!(Kind::parse("decisions"), None);
    }

    #[test]
    fn optional_fields_are_left_out() {
        let r = Record::from(AdminRecord {
            principal: None,
            role: None,
            action: "login".into(),
            target: "/admin".into(),
            outcome: "denied".into(),
        });
        assert_eq!(r.kind(), Kind::Admin);
        let keys: Vec<&str> = r.data().keys().map(String::as_str).collect();
        assert!(!keys.contains(&"principal") && keys.contains(&"outcome"));
    }
}
