//! Where the TI-Messenger profile (`crate::ti`) is enforced on traffic, and how its refusals
//! are answered, counted and recorded.
use http::StatusCode;

use super::guard::Guard;
use crate::policy::{Direction, Refusal, RefusalReason};
use crate::ti::TiDenial;

/// Counter of TI refusals by `reason` (`TiDenial::as_str`) and `side` (`inbound`, `outbound`,
/// `client`).
pub const TI_REFUSALS_TOTAL: &str = "grenzwacht_ti_refusals_total";

/// The Matrix error for a TI refusal: 403 `M_FORBIDDEN` naming the domain or user (a stale
/// list also refuses with 403: the sender must not retry into a blocked federation).
pub fn refusal(d: &TiDenial) -> Refusal {
    Refusal::new(
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
        RefusalReason::TiDenied,
        d.to_string(),
    )
}

/// Counts, logs and audits a TI refusal of a request that did not pass through the federation
/// exchange (the client-server listener); returns the refusal to answer with.
pub async fn record_client_refusal(
    guard: &Guard,
    d: &TiDenial,
    method: &str,
    path: &str,
    client: Option<String>,
) -> Refusal {
    metrics::counter!(TI_REFUSALS_TOTAL, "reason" => d.as_str(), "side" => "client").increment(1);
    tracing::info!(reason = d.as_str(), "TI: client request refused: {d}");
    let r = refusal(d);
    super::audit_trail::record_refusal(guard, Direction::Outbound, method, path, None, client, &r)
        .await;
    r
}
