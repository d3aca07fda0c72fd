//! Re-issuing a permit from a stored transaction decision (idempotent retries).
//!
//! A sender retries a transaction with the same content; the retry must get exactly the first
//! decision — anything else could leak what the first attempt withheld (e.g. after a policy
//! reload). The proxy looks the decision up (`proxy::replay`); this module turns it back into a
//! [`Permit`] or the same refusal. It takes only a [`TxnRecord`] read from the store — never
//! arbitrary bytes — and is crate-private.
use bytes::Bytes;
use http::{HeaderValue, StatusCode};

use super::permit::{Forward, Permit};
use super::{Refusal, RefusalReason};
use crate::store::{TxnAction, TxnRecord};

/// The permit (or refusal) a stored decision stands for: the stored forwarded body and X-Matrix
/// header replace the received ones.
pub(crate) fn replay(mut forward: Forward, rec: TxnRecord) -> Result<Permit<Forward>, Refusal> {
    match rec.decision.action {
        TxnAction::Forward { body, x_matrix } => {
            forward.body = Bytes::from(body);
            match x_matrix.and_then(|h| HeaderValue::from_str(&h).ok()) {
                Some(h) => {
                    forward.headers.insert(http::header::AUTHORIZATION, h);
                }
                None => {
                    forward.headers.remove(http::header::AUTHORIZATION);
                }
            }
            Ok(Permit::issue(forward))
        }
        TxnAction::Refuse { errcode, error } => {
            let status = StatusCode::from_u16(rec.decision.status).unwrap_or(StatusCode::FORBIDDEN);
            let errcode: &'static str = if errcode == "M_FORBIDDEN" {
                "M_FORBIDDEN"
            } else {
                "M_UNKNOWN"
            };
            Err(Refusal::new(status, errcode, RefusalReason::Policy, error))
        }
    }
}
