//! PDU integrity: the room version of every PDU the guard must verify, and the guard's own
//! check of signatures and content hashes of PDUs that enter the protected side.
//!
//! # Design notes
//!
//! * **What is verified.** PDUs whose data flows into the protected side: inbound requests
//!   (`/send`, invites, `send_join`, …) and the responses to outbound requests (`backfill`,
//!   `state`, `send_join` state, …). PDUs leaving the protected side were made or accepted by
//!   the protected server; re-verifying them would cost every outbound transaction and protect
//!   nothing the receiver does not check itself.
//! * **Which keys.** ruma names the servers whose signatures the room version requires (the
//!   sender's server; in v1–v2 also the event id's server; restricted joins the authorising
//!   server). Their keys come from the guard's verified cache ([`crate::keys::RemoteKeys`]),
//!   fetched on a miss by the guard itself: a protected server's keys from its own federation
//!   listener, every other server's over the outbound path with verified TLS — never from
//!   attested objects.
//! * **Outcomes** (fail closed, and never a hole in the DAG):
//!   - valid signatures, hash matches → nothing to do;
//!   - valid signatures, hash mismatch → the event was redacted on the way; the receiver will
//!     keep only the redacted form, so the guard redacts it in transit too (the unredacted
//!     content never crosses);
//!   - a signature that fails, is missing or a malformed PDU → the content does not cross: in
//!     a transaction or any response (backfill, `get_missing_events`, the `send_join` state,
//!     an invite answer, …) the PDU is redacted in transit (the receiver rejects it for its
//!     signature anyway, and every other PDU arrives); a request to a single-event endpoint
//!     (invite, `send_join`, …) is refused with 403;
//!   - a PDU that breaks the number rules of its room version is left out before it is
//!     verified (`proxy::perpdu`);
//!   - keys that cannot be obtained now (fetch failed, rate limited) → the request is refused
//!     with 503 and not recorded as a transaction decision, so the sender's retry is judged
//!     again once the keys are reachable; nothing is lost.
//! * **Room versions.** Verification (and redaction) need the room version, learned only from
//!   authoritative sources and looked up at the protected homeserver when unknown
//!   (`proxy::rooms`, which runs before this check). A PDU that must be verified in a room whose
//!   version is still unknown does not pass: 503 (`unknown_room_version`) when the homeserver
//!   could not be asked (the sender retries); when it does not know the room, a transaction's
//!   PDUs of that room are left out on their own (no entry in the answer, as Synapse ignores
//!   events of rooms it does not know) and any other request is refused with 403; 400
//!   `M_UNSUPPORTED_ROOM_VERSION` (as Synapse) when the version is one the guard has no rules
//!   for; counted and logged, never stored as a
//!   transaction decision, so a retry passes once the version is known.
//!
//! Every failure is counted in `grenzwacht_pdu_checks_total{direction,outcome}` (bounded
//! outcome set) and logged with the room and the sender's server (never content).
use std::collections::HashMap;
use std::time::SystemTime;

use http::StatusCode;
use ruma::RoomVersionId;

use super::guard::Guard;
use crate::federation::catalog::Handler;
use crate::federation::pdu::PduView;
use crate::federation::redact;
use crate::keys::{PduCheck, RemoteKeyError};
use crate::policy::{Direction, ExchangeCtx, PduVerdict, Refusal, RefusalReason, Units};

/// Rule names the integrity findings carry into logs and the transaction record.
pub const RULE_HASH_MISMATCH: &str = "integrity:hash-mismatch";
/// See [`RULE_HASH_MISMATCH`].
pub const RULE_BAD_SIGNATURE: &str = "integrity:bad-signature";
/// See [`RULE_HASH_MISMATCH`]: an event in a response whose signing keys cannot be obtained.
pub const RULE_KEYS_UNAVAILABLE: &str = "integrity:keys-unavailable";

/// The room a PDU belongs to: its `room_id`, the `roomId` path parameter, or (room version 12+
/// create events, which have none) the id derived from the create event itself.
pub fn pdu_room(pdu: &PduView<'_>, room_hint: Option<&str>) -> Option<String> {
    if let Some(r) = pdu.room_id.as_deref() {
        return Some(r.to_string());
    }
    if pdu.event_type == "m.room.create" {
        if let Some(id) = super::rooms::create_room_id(pdu) {
            return Some(id);
        }
    }
    room_hint.map(str::to_string)
}

/// The room version of each PDU of `units` (in order), looked up once per room; `None` for a
/// PDU that is left out anyway (`Units::omit`). A room whose version is not known →
/// `UnknownRoomVersion` refusal.
pub fn room_versions(
    guard: &Guard,
    data: Direction,
    units: &Units<'_>,
    room_hint: Option<&str>,
) -> Result<Vec<Option<RoomVersionId>>, Refusal> {
    let mut cache: HashMap<String, RoomVersionId> = HashMap::new();
    let mut out = Vec::with_capacity(units.pdus.len());
    for (i, pdu) in units.pdus.iter().enumerate() {
        // Left out anyway (`proxy::perpdu`, `proxy::rooms`): no version needed.
        if units.pdu_pos.get(i).is_some_and(|p| units.omit.contains(p)) {
            out.push(None);
            continue;
        }
        let room = pdu_room(pdu, room_hint)
            .ok_or_else(|| Refusal::forbidden(RefusalReason::BadJson, "event without a room"))?;
        if let Some(v) = cache.get(&room) {
            out.push(Some(v.clone()));
            continue;
        }
        let known = guard
            .store()
            .room_version(&room)
            .map_err(|e| internal(format!("room version lookup: {e}")))?;
        let version = known.as_deref().and_then(redact::parse_room_version).ok_or_else(|| {
            crate::telemetry::record_pdu_check(data, "unknown_room_version");
            tracing::warn!(room = %room, known = ?known, "unknown or unsupported room version: the event cannot be verified, so it does not pass");
            match known {
                None => super::rooms::unknown_version(),
                // As Synapse answers a room version it does not implement.
                Some(_) => super::rooms::unsupported_version(),
            }
        })?;
        cache.insert(room, version.clone());
        out.push(Some(version));
    }
    Ok(out)
}

fn internal(msg: String) -> Refusal {
    Refusal::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "M_UNKNOWN",
        RefusalReason::Internal,
        msg,
    )
}

/// Verifies the PDUs of `units` if their data enters the protected side (`data` is the
/// direction the data flows: the exchange's direction for requests, reversed for responses).
/// Returns one finding per PDU (`None` = nothing to add); the policy layer merges findings with
/// its own verdicts (the most severe wins).
pub async fn check(
    guard: &Guard,
    ctx: &ExchangeCtx,
    data: Direction,
    units: &Units<'_>,
    room_hint: Option<&str>,
) -> Result<Vec<Option<PduVerdict>>, Refusal> {
    if data != Direction::Inbound || !guard.verify_pdus() || units.pdus.is_empty() {
        return Ok(Vec::new());
    }
    let versions = room_versions(guard, data, units, room_hint)?;
    let fetcher = super::guard::GuardKeyFetcher(guard);
    let single_event = ctx.endpoint.handler == Handler::PduRequest;
    // The data flows against the request: this is a response.
    let in_response = data != ctx.direction;
    let mut findings = Vec::with_capacity(units.pdus.len());
    for (pdu, version) in units.pdus.iter().zip(&versions) {
        // Left out anyway (`proxy::perpdu`, `proxy::rooms`): nothing to verify.
        let Some(version) = version else {
            findings.push(None);
            continue;
        };
        let r = guard
            .remote_keys()
            .verify_pdu_or_fetch(&fetcher, pdu.raw, version, SystemTime::now())
            .await;
        let outcome = match &r {
            Ok(PduCheck::Verified) => "verified",
            Ok(PduCheck::HashMismatch) => "hash_mismatch",
            Err(RemoteKeyError::Fetch { .. } | RemoteKeyError::RateLimited { .. }) => {
                "keys_unavailable"
            }
            Err(_) => "bad_signature",
        };
        crate::telemetry::record_pdu_check(data, outcome);
        let finding = match r {
            Ok(PduCheck::Verified) => None,
            Ok(PduCheck::HashMismatch) => {
                tracing::info!(room = ?pdu.room_id, sender = %pdu.sender, "content hash mismatch: the event crosses redacted");
                Some(PduVerdict::Redact {
                    rule: RULE_HASH_MISMATCH.into(),
                })
            }
            // In a response (backfill, state, send_join, …) one event whose signer's keys
            // cannot be had does not sink the others: it crosses redacted, and the receiver,
            // which cannot verify it either, rejects it. A request is retried by its sender.
            Err(e @ (RemoteKeyError::Fetch { .. } | RemoteKeyError::RateLimited { .. }))
                if in_response =>
            {
                tracing::warn!(room = ?pdu.room_id, sender = %pdu.sender, "cannot verify a PDU of a response: {e}; it crosses redacted");
                Some(PduVerdict::Redact {
                    rule: RULE_KEYS_UNAVAILABLE.into(),
                })
            }
            Err(e @ (RemoteKeyError::Fetch { .. } | RemoteKeyError::RateLimited { .. })) => {
                tracing::warn!(room = ?pdu.room_id, sender = %pdu.sender, "cannot verify PDU now: {e}");
                return Err(Refusal::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "M_UNKNOWN",
                    RefusalReason::Upstream,
                    "the guard cannot obtain the keys to verify an event now; retry later",
                ));
            }
            // In a response (backfill, get_missing_events, send_join, an invite answer, …) the
            // event crosses redacted and the rest of the answer arrives: the receiver rejects
            // it for its signature as it would without the guard.
            Err(e) if in_response => {
                tracing::warn!(room = ?pdu.room_id, sender = %pdu.sender, "PDU of a response not verified: {e}; it crosses redacted");
                Some(PduVerdict::Redact {
                    rule: RULE_BAD_SIGNATURE.into(),
                })
            }
            Err(e) => {
                tracing::warn!(room = ?pdu.room_id, sender = %pdu.sender, "PDU refused by the guard's verification: {e}");
                if single_event {
                    return Err(Refusal::forbidden(
                        RefusalReason::Auth,
                        "event signature not verified",
                    ));
                }
                Some(PduVerdict::Reject {
                    rule: RULE_BAD_SIGNATURE.into(),
                })
            }
        };
        findings.push(finding);
    }
    Ok(findings)
}
