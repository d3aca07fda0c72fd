//! Phase **authenticate**: the X-Matrix signature of the request, checked by the guard with the
//! origin's own keys, and the body's `origin` against the signed one.
use bytes::Bytes;
use http::{Method, StatusCode};

use super::refuse;
use crate::federation::xmatrix::XMatrix;
use crate::policy::{Refusal, RefusalReason};
use crate::proxy::guard::{Guard, GuardKeyFetcher};

/// Verifies an X-Matrix signature. A protected server's keys come from its own listener
/// (`GuardKeyFetcher`), a remote server's over the outbound path: the guard never trusts keys
/// a request brings.
pub(super) async fn verify_x_matrix(
    guard: &Guard,
    x: &XMatrix,
    method: &Method,
    uri: &str,
    destination: &str,
    body: &Bytes,
) -> Result<(), Refusal> {
    let unauthorized = |msg: String| {
        refuse(
            RefusalReason::Auth,
            StatusCode::UNAUTHORIZED,
            "M_UNAUTHORIZED",
            msg,
        )
    };
    let content: Option<&serde_json::value::RawValue> = if body.is_empty() {
        None
    } else {
        Some(serde_json::from_slice(body).map_err(|_| unauthorized("body is not JSON".into()))?)
    };
    let now = std::time::SystemTime::now();
    if !guard.is_protected(x.origin.as_str()) && guard.outbound_upstream().is_none() {
        return Err(unauthorized(
            "cannot verify: no outbound path to fetch keys".into(),
        ));
    }
    // A protected server's keys from its own listener, anyone else's over the outbound path;
    // every fetch is tracked for `/health` (`keys`).
    let fetcher = GuardKeyFetcher(guard);
    let r = guard
        .remote_keys()
        .verify_x_matrix_or_fetch(&fetcher, x, method.as_str(), uri, content, destination, now)
        .await;
    r.map_err(|e| {
        tracing::warn!(origin = %x.origin, "X-Matrix signature not verified: {e}");
        // The peer learns only that it failed: key-fetch errors can name addresses and upstream
        // answers (the log has them).
        unauthorized("X-Matrix signature not verified".into())
    })
}

/// A transaction's `origin` must be the server that signed the request (the spec requires it;
/// the receiver attributes the EDUs to the body's origin).
pub(super) fn check_origin(x: &XMatrix, body_origin: &str) -> Result<(), Refusal> {
    if x.origin.as_str() == body_origin {
        return Ok(());
    }
    Err(refuse(
        RefusalReason::Auth,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
        "the transaction's origin is not the signing server",
    ))
}
