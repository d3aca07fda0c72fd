//! Review of held events: who may look at and decide what the rules held back.
//!
//! This module is the contract between the hold queues (`proxy::hold`, `store::holds`), the
//! authenticated admin API (`admin`) and the review web UI (`admin::ui`): principals with
//! roles and clearances, the views of a held event a reviewer gets, and the [`ReviewQueue`]
//! trait the admin listener drives.
//!
//! Rules every implementation keeps:
//! - a principal sees a held event (summary or content) only if its clearance covers the
//!   event's effective label ([`ReviewError::NotCleared`] otherwise); an event without a
//!   label is visible to every reviewer;
//! - only [`Role::Reviewer`] (or [`Role::Admin`]) may decide; a reason is mandatory;
//! - with four-eyes on, a release needs two different reviewers: the first approval answers
//!   [`Outcome::AwaitingSecond`], the same reviewer approving again gets
//!   [`ReviewError::SameReviewer`];
//! - every decision is audited before it takes effect; if the audit cannot be written, the
//!   decision is refused ([`ReviewError::Unavailable`]).
use serde::{Deserialize, Serialize};

/// What a principal may do on the admin listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Lists, shows (within clearance) and decides held events.
    Reviewer,
    /// Reads the audit log and lists held events; decides nothing.
    Auditor,
    /// Everything a reviewer and an auditor may do, plus operator actions.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reviewer => "reviewer",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
    /// Whether this role may release or reject held events.
    pub fn may_decide(self) -> bool {
        matches!(self, Role::Reviewer | Role::Admin)
    }
    /// Whether this role may read the audit log.
    pub fn may_audit(self) -> bool {
        matches!(self, Role::Auditor | Role::Admin)
    }
}

/// An authenticated user of the admin listener (bearer token or client certificate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Stable name, recorded in the audit log (never the token).
    pub name: String,
    pub role: Role,
    /// Clearance in the JSON form of `crate::spif` (`{"policy": …, "classifications": […], …}`);
    /// `None`: cleared only for events without a label.
    pub clearance: Option<serde_json::Value>,
}

/// Identifier of one held event in the queue (stable across restarts).
pub type HoldId = i64;

/// Where a held event stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldState {
    /// Waiting for a decision (possibly with one four-eyes approval).
    Pending,
    /// Released: forwarded unchanged.
    Released,
    /// Rejected: forwarded redacted.
    Rejected,
}

/// A reviewer's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Release,
    Reject,
}

/// One reviewer action on a held event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub reviewer: String,
    pub decision: Decision,
    pub reason: String,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// A rule match inside a held event: where (field path, byte span in that field's text) and
/// which rule. Never the matched text itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Match {
    pub rule: String,
    pub field: String,
    pub start: usize,
    pub end: usize,
}

/// What a list shows of a held event (no content).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldSummary {
    pub id: HoldId,
    pub room_id: String,
    pub event_id: String,
    pub sender: String,
    pub origin: String,
    /// `"inbound"` or `"outbound"` (the way the event flows).
    pub direction: String,
    /// The servers the event waits for.
    pub destinations: Vec<String>,
    /// Rule ids that asked for the hold.
    pub rules: Vec<String>,
    /// The event's effective label as a display marking (e.g. `VS-VERTRAULICH`), if labelled.
    pub marking: Option<String>,
    pub held_at_ms: i64,
    pub state: HoldState,
    pub approvals: Vec<Approval>,
    /// Whether a release needs a second reviewer.
    pub four_eyes: bool,
}

/// What a cleared reviewer sees of one held event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldDetail {
    pub summary: HeldSummary,
    /// The event's `content` (policy-gated preview); `None` when previews are off.
    pub content: Option<serde_json::Value>,
    pub matches: Vec<Match>,
}

/// Result of a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The decision took effect; delivery follows.
    Decided(HoldState),
    /// Four-eyes: one approval recorded, a second reviewer must confirm.
    AwaitingSecond,
}

/// Why a review request failed. Messages never carry event content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    #[error("no held event with this id")]
    NotFound,
    #[error("not cleared for this event's label")]
    NotCleared,
    #[error("this role may not decide held events")]
    Forbidden,
    #[error("four-eyes: the same reviewer cannot approve twice")]
    SameReviewer,
    #[error("the event was already decided")]
    AlreadyDecided,
    #[error("a reason is required")]
    ReasonRequired,
    #[error("review unavailable: {0}")]
    Unavailable(String),
}

/// The queue of held events as the admin listener sees it.
pub trait ReviewQueue: Send + Sync {
    /// Pending (and, with `include_decided`, decided) events the principal is cleared for.
    fn list(&self, who: &Principal, include_decided: bool)
        -> Result<Vec<HeldSummary>, ReviewError>;
    /// One held event with its content preview, if the principal is cleared for it.
    fn show(&self, who: &Principal, id: HoldId) -> Result<HeldDetail, ReviewError>;
    /// Release or reject, with a mandatory reason.
    fn decide(
        &self,
        who: &Principal,
        id: HoldId,
        decision: Decision,
        reason: &str,
    ) -> Result<Outcome, ReviewError>;
}

/// A search of the audit log (the admin API's and the UI's audit pages; `grenzwacht audit
/// query` takes the same filters). Every field narrows; `None` = any.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditFilter {
    /// RFC 3339 lower bound (inclusive) of the record time.
    pub from: Option<String>,
    /// RFC 3339 upper bound (exclusive).
    pub to: Option<String>,
    pub room: Option<String>,
    pub sender: Option<String>,
    /// Origin or destination server.
    pub server: Option<String>,
    pub verdict: Option<String>,
    pub rule: Option<String>,
    /// Display marking or policy id of the effective label.
    pub label: Option<String>,
    /// Most records returned (newest last); 0 = the implementation's default.
    pub limit: usize,
}

/// Searches the audit log; records are returned as their JSON objects.
pub trait AuditSearch: Send + Sync {
    fn search(&self, filter: &AuditFilter) -> Result<Vec<serde_json::Value>, String>;
}

/// Resolves a bearer token to its principal (constant-time comparison; tokens are never
/// logged or recorded).
pub trait Authenticate: Send + Sync {
    fn bearer(&self, token: &str) -> Option<Principal>;
}

/// Records admin actions (logins, searches, decisions, refused attempts) in the audit log
/// before they take effect; an `Err` refuses the action.
pub trait ActionJournal: Send + Sync {
    fn admin_action(
        &self,
        who: Option<&Principal>,
        action: &str,
        target: &str,
        outcome: &str,
    ) -> Result<(), String>;
}

/// Records hold-queue events in the audit log before they take effect: a PDU held for review
/// (before the sender gets its answer) and every decision step (before it is stored). An `Err`
/// refuses: the transaction that carried the held PDU gets 503 (the sender retries), the
/// decision gets [`ReviewError::Unavailable`].
pub trait HoldJournal: Send + Sync {
    /// `event` was held (or, held before, is now held towards one more destination: then
    /// `event.destinations` names that one).
    fn held(&self, event: &HeldSummary) -> Result<(), String>;
    /// `who` (a principal's name, or `timeout` for the default decision) decided `decision`
    /// on `event` with `reason`; `outcome` is what the decision does.
    fn decided(
        &self,
        event: &HeldSummary,
        who: &str,
        decision: Decision,
        reason: &str,
        outcome: &Outcome,
    ) -> Result<(), String>;
}

/// A [`HoldJournal`] that only logs (no audit log connected).
#[derive(Debug, Clone, Copy, Default)]
pub struct LogJournal;

impl HoldJournal for LogJournal {
    fn held(&self, e: &HeldSummary) -> Result<(), String> {
        tracing::info!(hold = e.id, room = %e.room_id, event_id = %e.event_id, direction = %e.direction, rules = ?e.rules, "event held for review");
        Ok(())
    }
    fn decided(
        &self,
        e: &HeldSummary,
        who: &str,
        decision: Decision,
        reason: &str,
        outcome: &Outcome,
    ) -> Result<(), String> {
        tracing::warn!(hold = e.id, room = %e.room_id, event_id = %e.event_id, reviewer = who, decision = ?decision, outcome = ?outcome, reason, "held event decided");
        Ok(())
    }
}
