//! Verdicts and refusals.
use http::StatusCode;

pub use crate::telemetry::RefusalReason;

/// A refusal: what the sender gets (a Matrix error) and why (for logs and metrics).
///
/// `message` is shown to the sender and logged: it never contains payload content or secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub errcode: &'static str,
    pub message: String,
    pub reason: RefusalReason,
}

impl Refusal {
    pub fn new(
        status: StatusCode,
        errcode: &'static str,
        reason: RefusalReason,
        message: impl Into<String>,
    ) -> Self {
        Refusal {
            status,
            errcode,
            message: message.into(),
            reason,
        }
    }
    pub fn forbidden(reason: RefusalReason, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "M_FORBIDDEN", reason, message)
    }
    /// The Matrix error body `{"errcode": …, "error": …}`.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"errcode": self.errcode, "error": self.message}))
            .unwrap_or_else(|_| br#"{"errcode":"M_UNKNOWN","error":"internal error"}"#.to_vec())
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} ({}): {}",
            self.status.as_u16(),
            self.errcode,
            self.reason.as_str(),
            self.message
        )
    }
}

/// Request- or response-level decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Refuse(Refusal),
}

/// Per-PDU verdict. `Redact` is applied by redaction in transit (`policy::permit`,
/// `proxy::rewrite`). `Hold` sends the PDU to the review queue (`proxy::hold`) when the exchange
/// has one (`RoomGate::holds`), else it acts as redact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PduVerdict {
    Allow,
    Redact { rule: String },
    Hold { rule: String },
    Reject { rule: String },
}

impl PduVerdict {
    /// Order for "the most severe wins": allow < redact < hold < reject.
    pub fn severity(&self) -> u8 {
        match self {
            PduVerdict::Allow => 0,
            PduVerdict::Redact { .. } => 1,
            PduVerdict::Hold { .. } => 2,
            PduVerdict::Reject { .. } => 3,
        }
    }
}

/// Per-EDU verdict; also per recipient device of a to-device EDU ([`crate::policy::Policy::to_device`]:
/// `Drop` removes that device's message only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EduVerdict {
    Allow,
    Drop { rule: String },
}

/// Per user-data field (profile, device, directory responses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldVerdict {
    Allow,
    /// Remove the field (its key) from the response.
    Remove {
        rule: String,
    },
}
