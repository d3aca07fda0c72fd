//! Phases **inspect** and **inspect_response**: strict parse of a body according to the
//! endpoint's catalog entry, and typed views of every unit the policy must see.
use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use super::refuse;
use crate::federation::catalog::{BodyKind, Direction as Part, Endpoint, EventKind, Handler};
use crate::federation::json::{self, JsonLimits, TopLevel};
use crate::federation::txn::Transaction;
use crate::federation::{pdu, response_text, userdata};
use crate::policy::permit::Units;
use crate::policy::{Refusal, RefusalReason};
use crate::proxy::guard::Guard;

/// A parse failure as the sender sees it: the parser's errcode, 413 for size, else 400.
fn bad_request(errcode: &'static str, what: impl std::fmt::Display) -> Refusal {
    let (status, reason) = match errcode {
        "M_TOO_LARGE" => (StatusCode::PAYLOAD_TOO_LARGE, RefusalReason::TooLarge),
        _ => (StatusCode::BAD_REQUEST, RefusalReason::BadJson),
    };
    refuse(reason, status, errcode, what.to_string())
}

fn top_level(kind: BodyKind) -> TopLevel {
    match kind {
        BodyKind::JsonStatusPair => TopLevel::StatusPair,
        _ => TopLevel::Object,
    }
}

/// Typed views of every event the catalog says the body carries. `Err` carries the errcode
/// and a payload-free message.
fn locate<'b>(
    endpoint: &'static Endpoint,
    part: Part,
    body: &'b [u8],
    max_pdu_bytes: usize,
) -> Result<Units<'b>, (&'static str, String)> {
    let mut units = Units::default();
    if !endpoint.carries(part).has_events() {
        return Ok(units);
    }
    let found = pdu::pdus_in(endpoint, part, body).map_err(|e| (e.errcode(), e.to_string()))?;
    for (pos, f) in found.into_iter().enumerate() {
        match f.kind() {
            EventKind::Pdu => {
                let len = f.raw.get().len();
                if len > max_pdu_bytes {
                    return Err((
                        "M_TOO_LARGE",
                        format!("event {pos} is {len} bytes, limit {max_pdu_bytes}"),
                    ));
                }
                units.pdus.push(
                    f.pdu()
                        .map_err(|e| (e.errcode(), format!("event {pos}: {e}")))?,
                );
                units.pdu_pos.push(pos);
            }
            _ => {
                units.events.push(
                    f.event()
                        .map_err(|e| (e.errcode(), format!("event {pos}: {e}")))?,
                );
                units.event_pos.push(pos);
            }
        }
    }
    Ok(units)
}

/// What the inspection of a request found.
#[derive(Default)]
pub(super) struct Inspected<'b> {
    pub units: Units<'b>,
    /// A transaction's `origin` (must equal the X-Matrix origin).
    pub txn_origin: Option<String>,
}

/// Strict parse of a request body according to the endpoint's catalog entry.
pub(super) fn inspect_request<'b>(
    guard: &Guard,
    direction: crate::policy::Direction,
    endpoint: &'static Endpoint,
    body: &'b Bytes,
) -> Result<Inspected<'b>, Refusal> {
    let limits = guard.limits();
    if !endpoint.request_body.is_json() {
        if !body.is_empty() {
            return Err(refuse(
                RefusalReason::BadJson,
                StatusCode::BAD_REQUEST,
                "M_BAD_JSON",
                "this endpoint takes no request body",
            ));
        }
        return Ok(Inspected::default());
    }
    let jl = JsonLimits::new(limits.max_request_body, limits.max_json_depth);
    json::validate_with(body, jl, top_level(endpoint.request_body))
        .map_err(|e| bad_request(e.errcode(), &e))?;
    if endpoint.handler == Handler::Transaction {
        let limits = crate::proxy::perpdu::read_limits(guard.txn_limits());
        let t =
            Transaction::parse(body, &limits).map_err(|e| crate::proxy::perpdu::txn_refusal(&e))?;
        let (pdus, pdu_pos, omit) =
            crate::proxy::perpdu::txn_pdus(&t, guard.txn_limits().max_pdu_bytes, direction);
        let edus = t
            .edu_views()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad_request(e.errcode(), &e))?;
        let mut to_device = Vec::new();
        for (i, e) in edus.iter().enumerate() {
            to_device.extend(
                userdata::to_device_in(i, e)
                    .map_err(|e| bad_request(e.errcode(), format!("EDU {i}: {e}")))?,
            );
        }
        return Ok(Inspected {
            units: Units {
                pdus,
                pdu_pos,
                edus,
                to_device,
                omit,
                ..Units::default()
            },
            txn_origin: Some(t.origin.to_string()),
        });
    }
    let units = locate(endpoint, Part::Request, body, limits.max_pdu_bytes)
        .map_err(|(code, msg)| bad_request(code, msg))?;
    Ok(Inspected {
        units,
        txn_origin: None,
    })
}

/// Strict parse of a response body. Any malformed JSON response becomes a 502.
/// `query_type`: the `queryType` path parameter (generic query), for the user-data fields.
pub(super) fn inspect_response<'b>(
    guard: &Guard,
    endpoint: &'static Endpoint,
    status: StatusCode,
    headers: &HeaderMap,
    body: &'b Bytes,
    query_type: Option<&str>,
) -> Result<Units<'b>, Refusal> {
    let limits = guard.limits();
    let bad_upstream = |what: String| {
        refuse(
            RefusalReason::Upstream,
            StatusCode::BAD_GATEWAY,
            "M_UNKNOWN",
            format!("upstream sent {what}"),
        )
    };
    let is_json_ct = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    let jl = JsonLimits::new(limits.max_response_body, limits.max_json_depth);
    if !status.is_success() {
        // Error answers must be Matrix errors (JSON objects); anything else is not passed on.
        if body.is_empty() {
            return Ok(Units::default());
        }
        json::validate_with(body, jl, TopLevel::Object)
            .map_err(|e| bad_upstream(format!("a malformed error response ({e})")))?;
        // An error message is text too (it may echo what was asked), and so is anything else
        // in the body: an error answer has no event sites (`response_text::error_texts`).
        let response_texts = response_text::error_texts(body)
            .map_err(|e| bad_upstream(format!("a malformed error response ({e})")))?;
        return Ok(Units {
            response_texts,
            ..Units::default()
        });
    }
    if !endpoint.response_body.is_json() {
        // Media (multipart/binary): size-limited by the upstream client and not inspected.
        // Media requests reach this point only with `[media] allow_unscanned` (`policy::media`).
        return Ok(Units::default());
    }
    if !is_json_ct {
        return Err(bad_upstream(
            "a non-JSON response where JSON is required".into(),
        ));
    }
    json::validate_with(body, jl, top_level(endpoint.response_body))
        .map_err(|e| bad_upstream(format!("a malformed response ({e})")))?;
    let mut units = crate::proxy::perpdu::locate_response(endpoint, body, limits.max_pdu_bytes)
        .map_err(|msg| bad_upstream(format!("a malformed response ({msg})")))?;
    units.user_fields = userdata::fields_in(endpoint, query_type, body)
        .map_err(|e| bad_upstream(format!("a malformed response ({e})")))?;
    let typed: Vec<_> = units.user_fields.iter().map(|f| &f.path).collect();
    units.response_texts = response_text::response_texts(endpoint, body, &typed)
        .map_err(|e| bad_upstream(format!("a malformed response ({e})")))?;
    Ok(units)
}
