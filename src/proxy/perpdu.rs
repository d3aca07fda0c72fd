//! One bad event never sinks the others: PDUs the receiver would itself reject are left out of
//! transactions and responses (with a per-PDU error for the sender of a transaction), and
//! status codes of refused transactions follow Synapse.
//!
//! # Design notes
//!
//! * **What the receiver rejects by itself.** Room versions 6+ require every event to be
//!   canonical JSON: no floats, no integers outside ±(2^53 − 1), no `-0` (`strict_canonical_json`).
//!   Synapse drops such a PDU while it reads a transaction (`event_from_pdu_json` →
//!   `validate_canonicaljson`, "Ignoring PDU for failing to deserialize") and delivers the
//!   others; a `get_missing_events`, `backfill` or `send_join` answer with one such event loses
//!   only that event. The guard cannot redact such an event (redaction output is canonical JSON
//!   and the number may survive it), so it leaves it out ([`unacceptable`]):
//!   - in a transaction the PDU is withheld (`Verdicts::withhold`, the request re-signed) and
//!     the sender gets `{"pdus": {"$id": {"error": …}}}` for it ([`NOT_CANONICAL_ERROR`],
//!     [`withheld`], [`merge_errors`]) — Synapse itself answers nothing for it;
//!   - in a response the event is removed from its array ([`without_events`]);
//!   - in a request that carries one event (invite, `send_join`, …) the request is refused with
//!     400 `M_BAD_JSON`, as Synapse answers.
//!
//!   Rooms whose version the guard does not know are left to the other checks (they refuse
//!   or verify per room version).
//! * **Also withheld from a transaction** ([`txn_pdus`]): a PDU larger than 65 536 bytes
//!   (Synapse rejects it on its own: `MAX_PDU_SIZE`; the sender gets [`TOO_LARGE_ERROR`]) and a
//!   PDU that is not a well-formed event (no `type`, `sender`, `content` or `origin_server_ts`
//!   of the right type, duplicate fields: the guard cannot inspect it, Synapse ignores it). In
//!   responses such PDUs are cut out of their arrays ([`locate_response`]); a malformed event
//!   that is not a PDU (stripped state, a template) still refuses the answer (502).
//! * Counted in `grenzwacht_withheld_pdus_total{direction,cause}`, causes `not_canonical`,
//!   `too_large`, `malformed`.
//! * **Request signatures are not event rules.** The X-Matrix signature of a transaction with
//!   such a PDU is checked in the form Synapse checks it ([`crate::federation::pycanonical`]):
//!   the request is authentic even though one of its events is unacceptable.
//! * **Event ids** of withheld PDUs: `event_id` (v1–2) or the reference hash of the redacted
//!   event, computed with the room version 1–5 number rules when the event breaks the strict
//!   ones (a float in the content is gone after redaction). A PDU whose id cannot be computed
//!   gets no entry (Synapse gives none either).
//! * **Status codes** as Synapse answers: more than 50 PDUs or 100 EDUs in a transaction is
//!   400 ([`txn_refusal`]; `federation_server.py`, "Transaction PDU or EDU count too large.
//!   Returning 400"); the body size limit stays 413. A malformed X-Matrix header is 400
//!   `M_UNAUTHORIZED` ([`parse_x_matrix`]; `_parse_auth_header`), a missing one 401.
use std::collections::HashSet;

use http::StatusCode;
use serde_json::value::RawValue;

use super::guard::Guard;
use super::integrity::pdu_room;
use crate::federation::canonical::{check_canonical, is_canonical};
use crate::federation::catalog::{Direction as Part, Endpoint, Handler};
use crate::federation::pdu::PduView;
use crate::federation::redact;
use crate::federation::txn::{Transaction, TxnError, TxnLimits};
use crate::federation::xmatrix::{XMatrix, XMatrixError};
use crate::policy::{ExchangeCtx, Refusal, RefusalReason, Units};
use crate::store::Store;
use crate::telemetry as tm;

/// The error a transaction's sender gets for a PDU that is not canonical JSON in a room
/// version that requires it.
pub const NOT_CANONICAL_ERROR: &str =
    "event is not canonical JSON (floats, integers beyond 2^53 and -0 are invalid in this room version)";

/// The error a transaction's sender gets for a PDU larger than the spec allows.
pub const TOO_LARGE_ERROR: &str = "event is larger than 65536 bytes";

/// Bounded cause label of `grenzwacht_withheld_pdus_total`.
pub const CAUSE_NOT_CANONICAL: &str = "not_canonical";
/// See [`CAUSE_NOT_CANONICAL`].
pub const CAUSE_TOO_LARGE: &str = "too_large";
/// See [`CAUSE_NOT_CANONICAL`].
pub const CAUSE_MALFORMED: &str = "malformed";
/// See [`CAUSE_NOT_CANONICAL`]: a transaction's PDU for a room the protected homeserver does
/// not know (`proxy::rooms::ensure`).
pub const CAUSE_UNKNOWN_ROOM: &str = "unknown_room";

/// The limits a transaction is read with: counts as configured, the PDU size not — a PDU
/// beyond it is withheld on its own ([`txn_pdus`]), the others are delivered.
pub fn read_limits(limits: TxnLimits) -> TxnLimits {
    TxnLimits {
        max_pdu_bytes: usize::MAX,
        ..limits
    }
}

/// Views of a transaction's PDUs with their positions, and the positions of the PDUs the
/// receiver would reject on their own and that are withheld: larger than `max_pdu_bytes`, or
/// not a well-formed event (missing or mistyped `type`, `sender`, `content`,
/// `origin_server_ts`, duplicate fields, not an object). `data` is the way the transaction
/// flows (for the metric).
pub fn txn_pdus<'a>(
    t: &Transaction<'a>,
    max_pdu_bytes: usize,
    data: crate::policy::Direction,
) -> (Vec<PduView<'a>>, Vec<usize>, Vec<usize>) {
    let (mut views, mut positions, mut omit) = (Vec::new(), Vec::new(), Vec::new());
    for (pos, raw) in t.pdus.iter().enumerate() {
        let cause = if raw.get().len() > max_pdu_bytes {
            CAUSE_TOO_LARGE
        } else {
            match PduView::parse(raw) {
                Ok(view) => {
                    views.push(view);
                    positions.push(pos);
                    continue;
                }
                Err(_) => CAUSE_MALFORMED,
            }
        };
        tracing::info!(
            pos,
            cause,
            "PDU the receiver would reject: withheld from the transaction"
        );
        tm::record_withheld(data, cause);
        omit.push(pos);
    }
    (views, positions, omit)
}

/// The strict-canonical-JSON flag of a PDU's room version; `None` when the version is not
/// known (left to the other checks).
fn strict_room(store: &Store, pdu: &PduView<'_>, room_hint: Option<&str>) -> Option<bool> {
    let version = match pdu_room(pdu, room_hint) {
        Some(room) => store.room_version(&room).ok().flatten(),
        None => None,
    }
    .or_else(|| (pdu.event_type == "m.room.create").then(|| create_version(pdu.content)))?;
    redact::strict_canonical_json(&redact::parse_room_version(&version)?)
}

fn create_version(content: &RawValue) -> String {
    #[derive(serde::Deserialize)]
    struct Create {
        room_version: Option<String>,
    }
    serde_json::from_str::<Create>(content.get())
        .ok()
        .and_then(|c| c.room_version)
        .unwrap_or_else(|| "1".into())
}

/// Whether the receiver would reject `pdu` for its numbers (room version 6+). Fast path: a PDU
/// already in canonical form (Synapse sends them so) keeps the rules whatever its room
/// (one word-at-a-time scan, no store lookup, no parse).
fn breaks_strict_rules(store: &Store, pdu: &PduView<'_>, room_hint: Option<&str>) -> bool {
    if is_canonical(pdu.raw) {
        return false;
    }
    strict_room(store, pdu, room_hint) == Some(true) && check_canonical(pdu.raw, true).is_err()
}

/// Typed views of every event of a response, as the exchange inspects a request's, except
/// that a PDU larger than `max_pdu_bytes` or not a well-formed event is not a view: its
/// position goes to `Units::omit` and it is cut out of the answer (the receiver would reject
/// it). A malformed event that is not a PDU (stripped state, templates) still fails the
/// answer. `Err` carries a payload-free message.
pub fn locate_response<'b>(
    endpoint: &'static Endpoint,
    body: &'b [u8],
    max_pdu_bytes: usize,
) -> Result<Units<'b>, String> {
    use crate::federation::catalog::EventKind;
    let mut units = Units::default();
    if !endpoint.carries(Part::Response).has_events() {
        return Ok(units);
    }
    let found = crate::federation::pdu::pdus_in(endpoint, Part::Response, body)
        .map_err(|e| e.to_string())?;
    for (pos, f) in found.into_iter().enumerate() {
        match f.kind() {
            EventKind::Pdu => {
                let view = (f.raw.get().len() <= max_pdu_bytes)
                    .then(|| f.pdu().ok())
                    .flatten();
                match view {
                    Some(v) => {
                        units.pdus.push(v);
                        units.pdu_pos.push(pos);
                    }
                    None => {
                        tracing::info!(pos, "event of a response too large or malformed: left out");
                        units.omit.push(pos);
                    }
                }
            }
            _ => {
                units
                    .events
                    .push(f.event().map_err(|e| format!("event {pos}: {e}"))?);
                units.event_pos.push(pos);
            }
        }
    }
    Ok(units)
}

/// The positions (as in `units.pdu_pos`) of the PDUs of `units` that break the number rules of
/// their room version: the receiver would itself reject them, so they do not cross — left out
/// of a transaction or a response. A request that carries a single event refuses instead (400
/// `M_BAD_JSON`).
pub fn unacceptable(
    guard: &Guard,
    ctx: &ExchangeCtx,
    part: Part,
    units: &Units<'_>,
    room_hint: Option<&str>,
) -> Result<Vec<usize>, Refusal> {
    let data = match part {
        Part::Request => ctx.direction,
        Part::Response => ctx.direction.reverse(),
    };
    let mut out = Vec::new();
    for (i, pdu) in units.pdus.iter().enumerate() {
        if !breaks_strict_rules(guard.store(), pdu, room_hint) {
            continue;
        }
        if part == Part::Request && ctx.endpoint.handler != Handler::Transaction {
            tracing::info!(room = ?pdu.room_id, sender = %pdu.sender, "event is not canonical JSON in a room version that requires it: request refused");
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "M_BAD_JSON",
                RefusalReason::BadJson,
                "event is not canonical JSON",
            ));
        }
        tracing::info!(room = ?pdu.room_id, sender = %pdu.sender, part = ?part, "event is not canonical JSON in a room version that requires it: left out");
        tm::record_withheld(data, CAUSE_NOT_CANONICAL);
        out.push(units.pdu_pos[i]);
    }
    Ok(out)
}

/// The event id of a PDU as its room version computes it, also for a PDU that breaks the
/// strict number rules (see the module notes). `None` when it cannot be computed.
pub fn event_id(store: &Store, raw: &RawValue, room_hint: Option<&str>) -> Option<String> {
    if let Some(id) = super::pause::event_id_of(store, raw) {
        return Some(id);
    }
    let pdu = PduView::parse(raw).ok()?;
    let room = pdu_room(&pdu, room_hint)?;
    let version = store
        .room_version(&room)
        .ok()
        .flatten()
        .or_else(|| (pdu.event_type == "m.room.create").then(|| create_version(pdu.content)))?;
    let version = redact::parse_room_version(&version)?;
    let rules = version.rules()?;
    let redacted = redact::redact_pdu_lenient(raw, &version).ok()?;
    let obj: ruma::CanonicalJsonObject = serde_json::from_slice(&redacted).ok()?;
    ruma::signatures::reference_hash(&obj, &rules)
        .ok()
        .map(|h| format!("${h}"))
}

/// The PDUs the received transaction has and the forwarded one lacks, each with the error its
/// sender gets: [`NOT_CANONICAL_ERROR`] for PDUs that break the strict number rules, the
/// paused-room error for the others (`proxy::pause`). Computed from the two bodies, so a retry
/// that replays the stored decision gets the same answer.
pub fn withheld(
    store: &Store,
    limits: &TxnLimits,
    received: &[u8],
    forwarded: &[u8],
) -> Vec<(String, &'static str)> {
    let max_pdu_bytes = limits.max_pdu_bytes;
    let limits = read_limits(*limits);
    let (Ok(rec), Ok(fwd)) = (
        Transaction::parse(received, &limits),
        Transaction::parse(forwarded, &limits),
    ) else {
        return Vec::new();
    };
    if rec.pdus.len() == fwd.pdus.len() {
        return Vec::new();
    }
    let kept: HashSet<String> = fwd
        .pdus
        .iter()
        .filter_map(|raw| event_id(store, raw, None))
        .collect();
    let mut out: Vec<(String, &'static str)> = Vec::new();
    for raw in &rec.pdus {
        let Some(id) = event_id(store, raw, None) else {
            continue;
        };
        if kept.contains(&id) || out.iter().any(|(o, _)| *o == id) {
            continue;
        }
        let view = PduView::parse(raw).ok();
        // A PDU of a room the protected homeserver does not know (`proxy::rooms`): no entry,
        // as Synapse gives none for a room it does not know.
        let room_known = view
            .as_ref()
            .and_then(|p| pdu_room(p, None))
            .and_then(|r| store.room_version(&r).ok().flatten())
            .and_then(|v| redact::parse_room_version(&v))
            .is_some();
        if !room_known {
            continue;
        }
        let not_canonical = view
            .as_ref()
            .map(|p| breaks_strict_rules(store, p, None))
            .unwrap_or(false);
        let error = if raw.get().len() > max_pdu_bytes {
            TOO_LARGE_ERROR
        } else if not_canonical {
            NOT_CANONICAL_ERROR
        } else {
            super::pause::WITHHELD_ERROR
        };
        out.push((id, error));
    }
    out
}

/// Adds `{"error": …}` for each withheld event id to a `/send` response's `pdus` map (what the
/// receiver said about the others is kept). `None` if the body is not such an object.
pub fn merge_errors(body: &[u8], errors: &[(String, &'static str)]) -> Option<Vec<u8>> {
    let mut v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let obj = v.as_object_mut()?;
    let pdus = obj.entry("pdus").or_insert_with(|| serde_json::json!({}));
    let pdus = pdus.as_object_mut()?;
    for (id, error) in errors {
        pdus.entry(id.clone())
            .or_insert_with(|| serde_json::json!({ "error": error }));
    }
    serde_json::to_vec(&v).ok()
}

/// Removing an event from a response failed. No payload in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OmitError {
    /// The body could not be walked again.
    #[error("response could not be re-read")]
    Reparse,
    /// An event position the verdicts name is not in the body.
    #[error("event position out of range")]
    Position,
    /// The event is not an element of an array (e.g. the single `event` of a `send_join`
    /// answer): it cannot be left out without changing the answer's shape.
    #[error("event is not an array element")]
    NotInArray,
}

/// The response `body` without the events at `positions` (indices into the events the catalog
/// locates for `endpoint`, as [`Units`] counts them): each is cut out of its array with one
/// adjacent comma; every other byte stays as it was.
pub fn without_events(
    body: &[u8],
    endpoint: &'static Endpoint,
    part: Part,
    positions: &[usize],
) -> Result<Vec<u8>, OmitError> {
    let found =
        crate::federation::pdu::pdus_in(endpoint, part, body).map_err(|_| OmitError::Reparse)?;
    let base = body.as_ptr() as usize;
    let mut ranges = Vec::with_capacity(positions.len());
    for &pos in positions {
        let raw = found.get(pos).ok_or(OmitError::Position)?.raw.get();
        let start = (raw.as_ptr() as usize)
            .checked_sub(base)
            .filter(|s| s + raw.len() <= body.len())
            .ok_or(OmitError::Reparse)?;
        ranges.push((start, start + raw.len()));
    }
    ranges.sort_unstable();
    ranges.dedup();
    let mut out = body.to_vec();
    // From the end, so earlier offsets stay valid.
    for &(start, end) in ranges.iter().rev() {
        let before = out[..start]
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .ok_or(OmitError::NotInArray)?;
        let (cut_start, cut_end) = match out[before] {
            b',' => (before, end),
            b'[' => {
                let after = out[end..]
                    .iter()
                    .position(|b| !b.is_ascii_whitespace())
                    .map(|i| end + i)
                    .ok_or(OmitError::NotInArray)?;
                match out[after] {
                    b',' => (start, after + 1),
                    b']' => (start, end),
                    _ => return Err(OmitError::NotInArray),
                }
            }
            _ => return Err(OmitError::NotInArray),
        };
        out.drain(cut_start..cut_end);
    }
    Ok(out)
}

/// The X-Matrix credential of an `Authorization` header. As Synapse answers: a header that is
/// not X-Matrix at all is 401 (no credential), a malformed X-Matrix header (also an `origin`
/// that is no valid server name, e.g. a non-numeric port) is 400 `M_UNAUTHORIZED`.
pub fn parse_x_matrix(value: &http::HeaderValue) -> Result<XMatrix, Refusal> {
    let parsed = value
        .to_str()
        .map_err(|_| XMatrixError::NotXMatrix)
        .and_then(XMatrix::parse);
    parsed.map_err(|e| {
        let status = match e {
            XMatrixError::NotXMatrix => StatusCode::UNAUTHORIZED,
            _ => StatusCode::BAD_REQUEST,
        };
        Refusal::new(
            status,
            "M_UNAUTHORIZED",
            RefusalReason::Auth,
            "malformed X-Matrix Authorization header",
        )
    })
}

/// The status of a refused transaction body: Synapse answers 400 to more than 50 PDUs or 100
/// EDUs; other size limits are 413, malformed bodies 400.
pub fn txn_refusal(e: &TxnError) -> Refusal {
    let (status, reason) = match e {
        TxnError::TooManyPdus { .. } | TxnError::TooManyEdus { .. } => {
            (StatusCode::BAD_REQUEST, RefusalReason::TooLarge)
        }
        _ if e.errcode() == "M_TOO_LARGE" => {
            (StatusCode::PAYLOAD_TOO_LARGE, RefusalReason::TooLarge)
        }
        _ => (StatusCode::BAD_REQUEST, RefusalReason::BadJson),
    };
    Refusal::new(status, e.errcode(), reason, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::catalog;
    use http::Method;

    fn backfill() -> &'static Endpoint {
        catalog::lookup(&Method::GET, "/_matrix/federation/v1/backfill/!r:x")
            .unwrap()
            .endpoint
    }

    #[test]
    fn events_are_cut_out_of_their_arrays_and_nothing_else_changes() {
        let body = r#"{"origin":"x", "pdus": [ {"type":"a","n":1.5} , {"type":"b"},{"type":"c","n":2.5} ], "origin_server_ts":1}"#;
        let events = [
            r#"{"type":"a","n":1.5}"#,
            r#"{"type":"b"}"#,
            r#"{"type":"c","n":2.5}"#,
        ];
        let ep = backfill();
        for positions in [&[0][..], &[1], &[2], &[0, 2], &[2, 0, 1], &[1, 1]] {
            let out = without_events(body.as_bytes(), ep, Part::Response, positions).unwrap();
            let text = std::str::from_utf8(&out).unwrap();
            let v: serde_json::Value = serde_json::from_str(text).unwrap();
            let kept: Vec<&str> = (0..3)
                .filter(|i| !positions.contains(i))
                .map(|i| events[i])
                .collect();
            let expected: Vec<serde_json::Value> = kept
                .iter()
                .map(|e| serde_json::from_str(e).unwrap())
                .collect();
            assert_eq!(
                v["pdus"],
                serde_json::Value::Array(expected),
                "{positions:?}"
            );
            // Kept events and the other members stay byte for byte.
            for e in kept {
                assert!(text.contains(e), "{positions:?}: {text}");
            }
            assert!(text.starts_with(r#"{"origin":"x", "pdus": ["#), "{text}");
            assert!(text.ends_with(r#"], "origin_server_ts":1}"#), "{text}");
        }
        assert_eq!(
            without_events(body.as_bytes(), ep, Part::Response, &[3]),
            Err(OmitError::Position)
        );
    }

    #[test]
    fn an_event_that_is_no_array_element_is_not_cut() {
        let ep = catalog::lookup(&Method::PUT, "/_matrix/federation/v2/send_join/!r:x/$e")
            .unwrap()
            .endpoint;
        let body = br#"{"auth_chain":[],"event":{"type":"m.room.member","n":1.5},"state":[]}"#;
        let found = crate::federation::pdu::pdus_in(ep, Part::Response, body).unwrap();
        let pos = found
            .iter()
            .position(|f| f.raw.get().contains("1.5"))
            .expect("the catalog locates the send_join event");
        assert_eq!(
            without_events(body, ep, Part::Response, &[pos]),
            Err(OmitError::NotInArray)
        );
    }

    #[test]
    fn too_many_pdus_is_400_and_a_too_large_pdu_413() {
        let r = txn_refusal(&TxnError::TooManyPdus { count: 51, max: 50 });
        assert_eq!(
            (r.status, r.errcode),
            (StatusCode::BAD_REQUEST, "M_TOO_LARGE")
        );
        let r = txn_refusal(&TxnError::TooManyEdus {
            count: 101,
            max: 100,
        });
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        let r = txn_refusal(&TxnError::PduTooLarge {
            index: 0,
            size: 70_000,
            max: 65_536,
        });
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn merged_errors_keep_the_receivers_answers() {
        let out = merge_errors(
            br#"{"pdus":{"$a":{}}}"#,
            &[("$b".into(), NOT_CANONICAL_ERROR), ("$a".into(), "x")],
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["pdus"]["$a"], serde_json::json!({}));
        assert_eq!(v["pdus"]["$b"]["error"], NOT_CANONICAL_ERROR);
        assert!(merge_errors(b"[]", &[("$b".into(), NOT_CANONICAL_ERROR)]).is_none());
    }
}
