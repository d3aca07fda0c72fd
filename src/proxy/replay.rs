//! Retried transactions: the first decision, stored and replayed.
//!
//! A transaction is identified by [`TxnKey`] (direction, X-Matrix origin, destination,
//! transaction id). [`recall`] finds the decision of an earlier attempt; [`remember`] stores a
//! decision that withheld something, so a retry never gets less than the first attempt. The
//! store is SQLite: both calls run on the blocking pool, never on the async workers.
//!
//! What is stored: decisions that withheld something (a refusal by policy, a modified body).
//! Not stored: unchanged pass-through (a stricter decision on retry leaks nothing, and storing
//! every transaction's bytes would cost the hot path), internal faults and a not-yet-known room
//! version (a later redaction leaks nothing either).
use bytes::Bytes;
use http::StatusCode;

use crate::policy::{Direction, Forward, Permit, Refusal, RefusalReason};
use crate::store::{Store, TxnDecision, TxnPut, TxnRecord};

/// Identifies one transaction across retries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TxnKey {
    pub direction: Direction,
    /// The X-Matrix origin.
    pub origin: String,
    /// The destination, lower-cased.
    pub destination: String,
    pub txn_id: String,
}

impl TxnKey {
    pub fn new(direction: Direction, origin: &str, destination: &str, txn_id: &str) -> Self {
        TxnKey {
            direction,
            origin: origin.to_string(),
            destination: destination.to_ascii_lowercase(),
            txn_id: txn_id.to_string(),
        }
    }
}

/// 503: the store is a dependency that can come back (a lock released, space freed); the
/// sender retries, as it does while the audit log cannot be written.
fn store_unavailable() -> Refusal {
    Refusal::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "M_UNKNOWN",
        RefusalReason::Internal,
        "transaction store unavailable",
    )
}

/// The decision stored for `key` by an earlier attempt, if any.
pub async fn recall(store: &Store, key: &TxnKey) -> Result<Option<TxnRecord>, Refusal> {
    let (store, key) = (store.clone(), key.clone());
    tokio::task::spawn_blocking(move || {
        store.txn_decision(
            key.direction.as_str(),
            &key.origin,
            &key.destination,
            &key.txn_id,
        )
    })
    .await
    .map_err(|_| store_unavailable())?
    .map_err(|e| {
        tracing::warn!("transaction store: {e}");
        store_unavailable()
    })
}

/// Whether the decision for a transaction whose received body was `received` must be stored.
pub fn withheld(decided: &Result<Permit<Forward>, Refusal>, received: &Bytes) -> bool {
    match decided {
        Ok(p) => p.get().body != *received,
        Err(r) => matches!(
            r.reason,
            RefusalReason::Policy
                | RefusalReason::RequestText
                | RefusalReason::ServerDenied
                | RefusalReason::ClassDenied
        ),
    }
}

/// Stores `decided` for `key` (first writer wins). Returns the stored record of a concurrent
/// attempt that decided first, whose decision then applies to this attempt too.
pub async fn remember(
    store: &Store,
    key: &TxnKey,
    received: &Bytes,
    decided: &Result<Permit<Forward>, Refusal>,
) -> Result<Option<TxnRecord>, Refusal> {
    let record = match decided {
        Ok(p) => TxnDecision::forward(
            200,
            p.get().body.to_vec(),
            p.get()
                .headers
                .get(http::header::AUTHORIZATION)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string),
        ),
        Err(r) => TxnDecision::refuse(r.status.as_u16(), r.errcode, r.message.clone()),
    };
    let (store, key, received) = (store.clone(), key.clone(), received.clone());
    let put = tokio::task::spawn_blocking(move || {
        store.put_txn_decision(
            key.direction.as_str(),
            &key.origin,
            &key.destination,
            &key.txn_id,
            &received,
            &record,
        )
    })
    .await
    .map_err(|_| store_unavailable())?;
    match put {
        Ok(TxnPut::Inserted(_)) => Ok(None),
        Ok(TxnPut::Existing(rec)) => Ok(Some(rec)),
        Err(e) => {
            tracing::warn!("cannot store transaction decision: {e}");
            Err(store_unavailable())
        }
    }
}
