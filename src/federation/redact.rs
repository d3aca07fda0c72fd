//! Redaction in transit: the spec redaction algorithm per room version, and rewriting of
//! event-carrying bodies with some events replaced.
//!
//! # Design notes
//!
//! * **Room versions** are ruma's [`RoomVersionId`]. [`parse_room_version`] accepts exactly the
//!   stable versions `"1"` … `"12"`; anything else (unstable MSC versions, `"13"`, `"01"`) is
//!   `None` and the caller fails closed: an event of an unknown version cannot be redacted
//!   correctly, so it does not pass.
//! * **Redaction is ruma's** ([`ruma::canonical_json::redact_in_place`] with the version's
//!   [`RedactionRules`]), i.e. the algorithm of the room version spec (`content/rooms/v*.md`,
//!   "Redactions"): v1–5, v6–7 (no `m.room.aliases`), v8 (`join_rules.allow`), v9–10
//!   (`join_authorised_via_users_server`), v11–12 (no top-level `origin`, `membership`,
//!   `prev_state`; all of `m.room.create`; `content.redacts`; `power_levels.invite`;
//!   `third_party_invite.signed`). Everything outside the kept top-level keys goes, and so
//!   `unsigned` is always removed (we never add `redacted_because`). `event_id` (v1–2),
//!   `hashes` and `signatures` are kept: signatures are computed over the redacted form, so the
//!   event keeps its id and its signatures verify; only the content hash no longer matches,
//!   and a receiver then stores the redacted copy (server-server spec, "Validating hashes and
//!   signatures on received events").
//! * **Output is canonical JSON** (sorted keys, compact), produced by ruma's serialisation.
//! * **Numbers.** Room versions 6+ enforce canonical JSON: an event there with a float, an
//!   integer outside ±(2^53 − 1) or `-0` is refused ([`RedactError::NotCanonical`]); the
//!   receiver would discard it anyway. Room versions 1–5 allow such numbers, which ruma's
//!   canonical value cannot hold; for those (rare) events the numbers are set aside by path,
//!   ruma redacts the rest, and numbers whose path survived the redaction are put back (a
//!   redaction only removes keys, never moves values, so a surviving path is the same value).
//!   Their output is sorted and compact, the numbers in `serde_json`'s notation (`serde_json`
//!   reads `-0` as a float, so a surviving `-0` comes out as `-0.0`; Synapse would sign `0`
//!   — such an event's signature would not verify after redaction, in a v1–5 room only).
//! * ruma's `unstable-msc2870` feature (which would keep `m.room.server_acl` keys) is off, as
//!   no stable room version has that rule.
//! * **Bodies are spliced, not re-serialised.** [`rebuild_transaction`] and [`replace_events`]
//!   locate events through borrowed views of the original bytes (the same
//!   [`crate::federation::pdu`] machinery the inspection path uses) and copy the body with only
//!   the chosen byte ranges replaced; every other byte — other PDUs, EDUs, `origin`, unknown
//!   members, whitespace — is forwarded as it came. PDUs are only ever replaced, never removed
//!   (a missing PDU leaves a hole in the room DAG); EDUs may be dropped or replaced ([`rebuild_parsed_edus`]). [`rebuild_parsed`]
//!   takes the [`Transaction`] view the inspection path already built and skips even the
//!   element scan (≈ 1.5 µs instead of ≈ 90 µs for 50 PDUs).
//! * Synapse sends request bodies as canonical JSON; splicing a canonical redacted PDU into
//!   one keeps it canonical, so the X-Matrix re-signature can use the body bytes as they are
//!   ([`crate::federation::canonical::canonical_form`]).
//! * Errors are typed and carry indices and field names, never payload.
use std::ops::Range;

use ruma::canonical_json::redact_in_place;
use ruma::room_version_rules::RedactionRules;
use ruma::{CanonicalJsonObject, CanonicalJsonValue, Int, RoomVersionId};
use serde_json::value::RawValue;

use super::canonical::{check_canonical, object_to_canonical_bytes, CanonicalError};
use super::catalog::{Direction, Endpoint};
use super::pdu::{array_elements, for_each_member, pdus_in, EventError, LocateError};
use super::txn::Transaction;

/// Redaction or body rewriting failed. No payload in messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedactError {
    /// ruma has no rules for this room version (never the case for a version that
    /// [`parse_room_version`] returned).
    #[error("no redaction rules for this room version")]
    UnsupportedRoomVersion,
    /// The event is not valid JSON.
    #[error("event is not valid JSON")]
    NotJson,
    /// The event is not a JSON object.
    #[error("event is not a JSON object")]
    NotObject,
    /// The event has no string `type`, so its redaction rules cannot be chosen.
    #[error("event has no string `type`")]
    NoType,
    /// The event breaks the canonical-JSON rules its (strict) room version enforces.
    #[error("event is not canonical JSON: {0}")]
    NotCanonical(#[source] CanonicalError),
    /// The transaction body is malformed.
    #[error("transaction body: {0}")]
    Body(#[source] EventError),
    /// The body does not have the shape the catalog declares for the endpoint.
    #[error("body: {0}")]
    Locate(#[source] LocateError),
    /// A PDU index is not in the transaction.
    #[error("PDU index {index} out of range (transaction has {count})")]
    PduIndex {
        /// Requested index.
        index: usize,
        /// PDUs in the transaction.
        count: usize,
    },
    /// An EDU index is not in the transaction.
    #[error("EDU index {index} out of range (transaction has {count})")]
    EduIndex {
        /// Requested index.
        index: usize,
        /// EDUs in the transaction.
        count: usize,
    },
    /// An event index is not among the events found in the body.
    #[error("event index {index} out of range (body has {count})")]
    EventIndex {
        /// Requested index.
        index: usize,
        /// Events found in the body.
        count: usize,
    },
    /// The same index is given twice.
    #[error("index {index} given twice")]
    DuplicateIndex {
        /// The index.
        index: usize,
    },
    /// A replacement is not a JSON object.
    #[error("replacement for index {index} is not a JSON object")]
    ReplacementNotObject {
        /// The index it was meant for.
        index: usize,
    },
    /// The view passed in was not parsed from this body.
    #[error("view does not belong to this body")]
    NotInBody,
    /// Two replaced events overlap (one contains the other, e.g. the v1 invite body and the
    /// stripped state in its `unsigned`).
    #[error("replacement for index {index} overlaps another replacement")]
    Overlap {
        /// The later of the two indices.
        index: usize,
    },
}

impl RedactError {
    /// The Matrix error code for answering the sender: `M_NOT_JSON`, `M_BAD_JSON`,
    /// `M_UNSUPPORTED_ROOM_VERSION`; index errors are the guard's own fault (`M_UNKNOWN`).
    pub fn errcode(&self) -> &'static str {
        match self {
            Self::UnsupportedRoomVersion => "M_UNSUPPORTED_ROOM_VERSION",
            Self::NotJson => "M_NOT_JSON",
            Self::NotObject | Self::NoType => "M_BAD_JSON",
            Self::NotCanonical(e) => e.errcode(),
            Self::Body(e) => e.errcode(),
            Self::Locate(e) => e.errcode(),
            Self::PduIndex { .. }
            | Self::EduIndex { .. }
            | Self::EventIndex { .. }
            | Self::DuplicateIndex { .. }
            | Self::ReplacementNotObject { .. }
            | Self::NotInBody
            | Self::Overlap { .. } => "M_UNKNOWN",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Room versions.

/// The event id of a PDU of room version `version` (3 and later): `$` and its reference hash
/// (the spec's algorithm, ruma's implementation). `None` for an unknown version or a PDU that
/// is not canonical JSON.
pub fn reference_event_id(raw: &serde_json::value::RawValue, version: &str) -> Option<String> {
    let rules = parse_room_version(version)?.rules()?;
    let obj: ruma::CanonicalJsonObject = serde_json::from_str(raw.get()).ok()?;
    ruma::signatures::reference_hash(&obj, &rules)
        .ok()
        .map(|h| format!("${h}"))
}

/// The stable room version named `s` (`"1"` … `"12"`, exactly), or `None`.
///
/// Unstable and unknown versions are `None` on purpose: the caller must not guess rules.
pub fn parse_room_version(s: &str) -> Option<RoomVersionId> {
    Some(match s {
        "1" => RoomVersionId::V1,
        "2" => RoomVersionId::V2,
        "3" => RoomVersionId::V3,
        "4" => RoomVersionId::V4,
        "5" => RoomVersionId::V5,
        "6" => RoomVersionId::V6,
        "7" => RoomVersionId::V7,
        "8" => RoomVersionId::V8,
        "9" => RoomVersionId::V9,
        "10" => RoomVersionId::V10,
        "11" => RoomVersionId::V11,
        "12" => RoomVersionId::V12,
        _ => return None,
    })
}

/// Whether `version` enforces canonical JSON strictly (v6+), or `None` for a version without
/// rules.
pub fn strict_canonical_json(version: &RoomVersionId) -> Option<bool> {
    version
        .rules()
        .map(|r| r.authorization.strict_canonical_json)
}

// ---------------------------------------------------------------------------------------------
// Redaction.

/// Redacts one event (PDU, or stripped state / template: anything with a `type`) with the
/// redaction algorithm of room `version`, drops `unsigned`, and returns canonical JSON.
///
/// Keeps `event_id`, `hashes` and `signatures`; for v11+ a top-level `origin` is removed (part
/// of the v11 algorithm). Fails with [`RedactError::NotCanonical`] if an event of a strict
/// version (v6+) is not canonical JSON.
pub fn redact_pdu(raw: &RawValue, version: &RoomVersionId) -> Result<Box<RawValue>, RedactError> {
    let rules = version.rules().ok_or(RedactError::UnsupportedRoomVersion)?;
    if !raw.get().trim_start().starts_with('{') {
        return Err(RedactError::NotObject);
    }
    let bytes = match serde_json::from_str::<CanonicalJsonObject>(raw.get()) {
        Ok(mut object) => {
            redact_object(&mut object, &rules.redaction)?;
            object_to_canonical_bytes(&object)
        }
        Err(_) if rules.authorization.strict_canonical_json => {
            return Err(match check_canonical(raw, true) {
                Err(CanonicalError::NotJson) | Ok(()) => RedactError::NotJson,
                Err(e) => RedactError::NotCanonical(e),
            })
        }
        Err(_) => redact_lenient(raw, &rules.redaction)?,
    };
    // Both serialisers emit UTF-8 JSON without surrounding whitespace.
    let text = String::from_utf8(bytes).map_err(|_| RedactError::NotJson)?;
    RawValue::from_string(text).map_err(|_| RedactError::NotJson)
}

/// Redacts one event like [`redact_pdu`], but with the number rules of room versions 1–5 in
/// any room version: numbers canonical JSON cannot hold are set aside and put back where their
/// path survives (so the output may still hold them). For event ids of events that break the
/// strict rules of their room version: a float in the content is gone after redaction.
pub fn redact_pdu_lenient(raw: &RawValue, version: &RoomVersionId) -> Result<Vec<u8>, RedactError> {
    let rules = version.rules().ok_or(RedactError::UnsupportedRoomVersion)?;
    if !raw.get().trim_start().starts_with('{') {
        return Err(RedactError::NotObject);
    }
    redact_lenient(raw, &rules.redaction)
}

fn redact_object(
    object: &mut CanonicalJsonObject,
    rules: &RedactionRules,
) -> Result<(), RedactError> {
    redact_in_place(object, rules, None).map_err(|_| RedactError::NoType)?;
    // redact_in_place keeps only the listed top-level keys, so `unsigned` is gone already
    // (we pass no `redacted_because`); keep the guarantee independent of that.
    object.remove("unsigned");
    Ok(())
}

/// One step of a path inside a JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// Numbers canonical JSON cannot hold, by path; the value holds `null` there meanwhile.
type SetAside = Vec<(Vec<Seg>, serde_json::Number)>;

/// Room versions 1–5: floats and big integers are legal. Set them aside, let ruma redact the
/// rest, put back what survived.
fn redact_lenient(raw: &RawValue, rules: &RedactionRules) -> Result<Vec<u8>, RedactError> {
    let value: serde_json::Value =
        serde_json::from_str(raw.get()).map_err(|_| RedactError::NotJson)?;
    let mut set_aside = SetAside::new();
    let CanonicalJsonValue::Object(mut object) =
        lenient_to_canonical(value, &mut Vec::new(), &mut set_aside)
    else {
        return Err(RedactError::NotObject);
    };
    redact_object(&mut object, rules)?;
    let mut out = serde_json::Value::from(CanonicalJsonValue::Object(object));
    for (path, number) in set_aside {
        if let Some(slot) = resolve(&mut out, &path) {
            if slot.is_null() {
                *slot = serde_json::Value::Number(number);
            }
        }
    }
    // serde_json's map is ordered by key (a BTreeMap; with `preserve_order` it would keep the
    // insertion order, which is the BTreeMap order of the canonical object anyway).
    serde_json::to_vec(&out).map_err(|_| RedactError::NotJson)
}

fn lenient_to_canonical(
    value: serde_json::Value,
    path: &mut Vec<Seg>,
    set_aside: &mut SetAside,
) -> CanonicalJsonValue {
    use serde_json::Value as V;
    match value {
        V::Null => CanonicalJsonValue::Null,
        V::Bool(b) => CanonicalJsonValue::Bool(b),
        V::String(s) => CanonicalJsonValue::String(s),
        V::Number(n) => match n.as_i64().and_then(|i| Int::try_from(i).ok()) {
            // serde_json reports `-0` as a float, so an i64 here is a plain integer.
            Some(i) if n.is_i64() || n.is_u64() => CanonicalJsonValue::Integer(i),
            _ => {
                set_aside.push((path.clone(), n));
                CanonicalJsonValue::Null
            }
        },
        V::Array(items) => CanonicalJsonValue::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    path.push(Seg::Index(i));
                    let v = lenient_to_canonical(v, path, set_aside);
                    path.pop();
                    v
                })
                .collect(),
        ),
        V::Object(map) => CanonicalJsonValue::Object(
            map.into_iter()
                .map(|(k, v)| {
                    path.push(Seg::Key(k.clone()));
                    let v = lenient_to_canonical(v, path, set_aside);
                    path.pop();
                    (k, v)
                })
                .collect(),
        ),
    }
}

fn resolve<'v>(
    value: &'v mut serde_json::Value,
    path: &[Seg],
) -> Option<&'v mut serde_json::Value> {
    path.iter().try_fold(value, |v, seg| match seg {
        Seg::Key(k) => v.as_object_mut()?.get_mut(k),
        Seg::Index(i) => v.as_array_mut()?.get_mut(*i),
    })
}

// ---------------------------------------------------------------------------------------------
// Body rewriting.

/// One byte range of the original body and what replaces it.
struct Edit<'a> {
    range: Range<usize>,
    with: std::borrow::Cow<'a, [u8]>,
    /// The caller's index, for error reports.
    index: usize,
}

/// The byte range of `part` (a slice borrowed from `body`) within `body`.
fn span(body: &[u8], part: &str) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= body.len() && &body[start..end] == part.as_bytes()).then_some(start..end)
}

/// Copies `body` with the edits applied; edits must not overlap.
fn splice(body: &[u8], mut edits: Vec<Edit<'_>>) -> Result<Vec<u8>, RedactError> {
    edits.sort_by_key(|e| (e.range.start, e.range.end));
    for pair in edits.windows(2) {
        if pair[1].range.start < pair[0].range.end {
            return Err(RedactError::Overlap {
                index: pair[0].index.max(pair[1].index),
            });
        }
    }
    let grow: usize = edits.iter().map(|e| e.with.len()).sum();
    let mut out = Vec::with_capacity(body.len() + grow);
    let mut at = 0;
    for e in &edits {
        out.extend_from_slice(&body[at..e.range.start]);
        out.extend_from_slice(&e.with);
        at = e.range.end;
    }
    out.extend_from_slice(&body[at..]);
    Ok(out)
}

/// Refuses an index given twice.
/// One edit per replacement: the element at the replacement's index (`item`, `count` of them;
/// `out_of_range` names a bad index) gives way to the replacement, which must be an object; the
/// element must be bytes of `body`; an index may appear once.
fn replacement_edits<'a, 'r>(
    body: &[u8],
    replacements: &'r [(usize, Box<RawValue>)],
    count: usize,
    item: impl Fn(usize) -> Option<&'a RawValue>,
    out_of_range: fn(usize, usize) -> RedactError,
) -> Result<Vec<Edit<'r>>, RedactError> {
    check_unique(replacements.iter().map(|(i, _)| *i))?;
    let mut edits = Vec::with_capacity(replacements.len() + 1);
    for (index, replacement) in replacements {
        let raw = item(*index).ok_or_else(|| out_of_range(*index, count))?;
        if !is_object(replacement) {
            return Err(RedactError::ReplacementNotObject { index: *index });
        }
        edits.push(Edit {
            range: span(body, raw.get()).ok_or(RedactError::NotInBody)?,
            with: replacement.get().as_bytes().into(),
            index: *index,
        });
    }
    Ok(edits)
}

fn check_unique(indices: impl Iterator<Item = usize>) -> Result<(), RedactError> {
    let mut seen: Vec<usize> = indices.collect();
    seen.sort_unstable();
    match seen.windows(2).find(|w| w[0] == w[1]) {
        Some(w) => Err(RedactError::DuplicateIndex { index: w[0] }),
        None => Ok(()),
    }
}

fn is_object(raw: &RawValue) -> bool {
    raw.get().trim_start().starts_with('{')
}

/// Rewrites a `PUT /send/{txnId}` body: the PDUs at the given positions are replaced (same
/// positions — a PDU is never removed), the EDUs at the given positions are removed, every
/// other byte is kept as it came (`origin`, `origin_server_ts`, other PDUs and EDUs, unknown
/// members).
///
/// Indices refer to the body as given (`pdus[i]`, `edus[i]`). Refuses out-of-range and
/// repeated indices, replacements that are not objects, and a body with a repeated top-level
/// member. Scans the body once to find the elements; a caller that already holds the
/// [`Transaction`] view of `body` saves that scan with [`rebuild_parsed`].
pub fn rebuild_transaction(
    body: &[u8],
    replace_pdus: &[(usize, Box<RawValue>)],
    drop_edus: &[usize],
) -> Result<Vec<u8>, RedactError> {
    let root: &RawValue =
        serde_json::from_slice(body).map_err(|_| RedactError::Body(EventError::NotJson))?;
    let (mut pdus, mut edus) = (None, None);
    let mut keys: Vec<String> = Vec::with_capacity(4);
    for_each_member(root, |k, v| {
        if keys.iter().any(|seen| seen == k) {
            return Err(EventError::Duplicate(match k {
                "pdus" => "pdus",
                "edus" => "edus",
                "origin" => "origin",
                "origin_server_ts" => "origin_server_ts",
                _ => "member",
            }));
        }
        keys.push(k.to_owned());
        match k {
            "pdus" => pdus = Some(v),
            "edus" => edus = Some(v),
            _ => {}
        }
        Ok(())
    })
    .map_err(RedactError::Body)?;
    let pdus = elements("pdus", pdus, !replace_pdus.is_empty())?;
    let edus = elements("edus", edus, !drop_edus.is_empty())?;
    rebuild_elements(body, &pdus, &edus, replace_pdus, &[], drop_edus)
}

/// As [`rebuild_transaction`], with the elements taken from `txn`, the [`Transaction`] view
/// parsed from this very `body` (no second scan: the replacement is a copy of the body with
/// the ranges swapped). Fails with [`RedactError::NotInBody`] if `txn` was not parsed from
/// `body`.
pub fn rebuild_parsed(
    body: &[u8],
    txn: &Transaction<'_>,
    replace_pdus: &[(usize, Box<RawValue>)],
    drop_edus: &[usize],
) -> Result<Vec<u8>, RedactError> {
    rebuild_elements(body, &txn.pdus, &txn.edus, replace_pdus, &[], drop_edus)
}

/// As [`rebuild_parsed`], and the EDUs at the positions of `replace_edus` are replaced by the
/// given (rewritten) EDUs, e.g. a to-device EDU with some recipients' messages removed. An
/// index may be replaced or dropped, not both.
pub fn rebuild_parsed_edus(
    body: &[u8],
    txn: &Transaction<'_>,
    replace_pdus: &[(usize, Box<RawValue>)],
    replace_edus: &[(usize, Box<RawValue>)],
    drop_edus: &[usize],
) -> Result<Vec<u8>, RedactError> {
    rebuild_elements(
        body,
        &txn.pdus,
        &txn.edus,
        replace_pdus,
        replace_edus,
        drop_edus,
    )
}

/// The raw elements of a `pdus`/`edus` array (only scanned when `needed`).
fn elements<'a>(
    field: &'static str,
    v: Option<&'a RawValue>,
    needed: bool,
) -> Result<Vec<&'a RawValue>, RedactError> {
    match v {
        Some(v) if needed => array_elements(field, v, usize::MAX)
            .map(|(items, _)| items)
            .map_err(RedactError::Body),
        _ => Ok(Vec::new()),
    }
}

/// As [`rebuild_parsed_edus`], with the elements given as slices: `pdus` and `edus` must be
/// all the elements of the body's `pdus` and `edus` arrays, in order, borrowed from `body` —
/// e.g. the raw values of the views the exchange built when it inspected the body, so the
/// rewriter need not parse the transaction again. Each replaced element is checked to be the
/// very bytes of `body` it claims to be ([`RedactError::NotInBody`] otherwise).
pub fn rebuild_elements(
    body: &[u8],
    pdus: &[&RawValue],
    edus: &[&RawValue],
    replace_pdus: &[(usize, Box<RawValue>)],
    replace_edus: &[(usize, Box<RawValue>)],
    drop_edus: &[usize],
) -> Result<Vec<u8>, RedactError> {
    let mut edits = replacement_edits(
        body,
        replace_pdus,
        pdus.len(),
        |i| pdus.get(i).copied(),
        |index, count| RedactError::PduIndex { index, count },
    )?;
    if !drop_edus.is_empty() || !replace_edus.is_empty() {
        check_unique(
            drop_edus
                .iter()
                .copied()
                .chain(replace_edus.iter().map(|(i, _)| *i)),
        )?;
        if let Some(index) = drop_edus
            .iter()
            .copied()
            .chain(replace_edus.iter().map(|(i, _)| *i))
            .find(|&i| i >= edus.len())
        {
            return Err(RedactError::EduIndex {
                index,
                count: edus.len(),
            });
        }
        if let Some((index, _)) = replace_edus.iter().find(|(_, r)| !is_object(r)) {
            return Err(RedactError::ReplacementNotObject { index: *index });
        }
        // Replace everything from the first EDU to the end of the last one (elements and
        // the separators between them) with the kept elements; the brackets stay.
        let (first, last) = (edus[0], edus[edus.len() - 1]);
        let first = span(body, first.get()).ok_or(RedactError::NotInBody)?;
        let last = span(body, last.get()).ok_or(RedactError::NotInBody)?;
        let mut kept = Vec::with_capacity(last.end.saturating_sub(first.start));
        for (i, item) in edus.iter().enumerate() {
            if drop_edus.contains(&i) {
                continue;
            }
            // Only bytes of the body itself are kept.
            span(body, item.get()).ok_or(RedactError::NotInBody)?;
            if !kept.is_empty() {
                kept.push(b',');
            }
            match replace_edus.iter().find(|(r, _)| *r == i) {
                Some((_, with)) => kept.extend_from_slice(with.get().as_bytes()),
                None => kept.extend_from_slice(item.get().as_bytes()),
            }
        }
        edits.push(Edit {
            range: first.start..last.end,
            with: kept.into(),
            index: usize::MAX,
        });
    }
    splice(body, edits)
}

/// Rewrites any event-carrying body (`endpoint`'s request or response, per `part`) with some
/// events replaced: send_join `state`/`auth_chain`/`event`, backfill and `event` `pdus`,
/// `state`, `event_auth`, invite `event` (also the v1 `[200, {…}]` form and the v1 invite
/// request whose body is the event), knock room state, ….
///
/// `replacements` index into the `Vec` that [`pdus_in`] returns for the same body (site order,
/// then document order). Every byte outside the replaced events is kept. Replacing two events
/// where one contains the other (the v1 invite body and the stripped state in its `unsigned`)
/// is refused with [`RedactError::Overlap`].
pub fn replace_events(
    body: &[u8],
    endpoint: &'static Endpoint,
    part: Direction,
    replacements: &[(usize, Box<RawValue>)],
) -> Result<Vec<u8>, RedactError> {
    let found = pdus_in(endpoint, part, body).map_err(RedactError::Locate)?;
    let edits = replacement_edits(
        body,
        replacements,
        found.len(),
        |i| found.get(i).map(|f| f.raw),
        |index, count| RedactError::EventIndex { index, count },
    )?;
    splice(body, edits)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use ruma::serde::Base64;
    use ruma::signatures::{hash_and_sign_event, verify_event, PublicKeyMap, Verified};
    use serde_json::{json, Value};

    use super::*;
    use crate::federation::canonical::to_canonical_bytes;
    use crate::federation::catalog::by_id;
    use crate::federation::pdu::pdus_in;
    use crate::federation::txn::{Transaction, TxnLimits};
    use crate::keys::SigningKey;

    const ALL_VERSIONS: std::ops::RangeInclusive<u8> = 1..=12;

    fn version(v: u8) -> RoomVersionId {
        parse_room_version(&v.to_string()).unwrap()
    }

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    fn to_raw(v: &Value) -> Box<RawValue> {
        raw(&serde_json::to_string(v).unwrap())
    }

    /// Found by the `redact` fuzz target: an integer beyond 64 bits in a kept key of an old
    /// room version (read as a float) changed value on every redaction, so the redacted event
    /// no longer matched its signature. Floats now parse exactly (`float_roundtrip`).
    #[test]
    fn redaction_keeps_big_numbers_of_old_room_versions_exactly() {
        let pdu = raw(
            r#"{"content":{"users":{"@a:h":100},"events_default":62222222222222222222222222222222222222222222222220},"room_id":"!r:h","sender":"@a:h","state_key":"","type":"m.room.power_levels","origin_server_ts":5}"#,
        );
        let once = redact_pdu(&pdu, &version(1)).unwrap();
        let twice = redact_pdu(&once, &version(1)).unwrap();
        assert_eq!(once.get(), twice.get());
        let n: Value = serde_json::from_str(once.get()).unwrap();
        assert_eq!(
            n["content"]["events_default"].as_f64(),
            Some(62222222222222222222222222222222222222222222222220.0)
        );
    }

    #[test]
    fn room_versions_are_exactly_the_stable_ones() {
        for v in ALL_VERSIONS {
            let id = parse_room_version(&v.to_string()).unwrap();
            assert_eq!(id.as_str(), v.to_string());
            assert!(id.rules().is_some());
            assert_eq!(strict_canonical_json(&id), Some(v >= 6));
        }
        for bad in [
            "",
            "0",
            "13",
            "01",
            " 1",
            "1 ",
            "v1",
            "1.0",
            "org.matrix.msc2870",
            "12a",
            "١",
        ] {
            assert_eq!(parse_room_version(bad), None, "{bad:?}");
        }
    }

    // --- the spec's redaction rules, written down from content/rooms/v*.md -----------------

    /// Top-level keys the spec keeps: v1–10 and v11–12.
    fn spec_top_level(v: u8) -> BTreeSet<&'static str> {
        let mut keys: BTreeSet<_> = [
            "event_id",
            "type",
            "room_id",
            "sender",
            "state_key",
            "content",
            "hashes",
            "signatures",
            "depth",
            "prev_events",
            "auth_events",
            "origin_server_ts",
        ]
        .into();
        if v <= 10 {
            keys.extend(["prev_state", "origin", "membership"]);
        }
        keys
    }

    /// An event carrying every top-level key any version keeps, plus some no version keeps.
    fn event(ty: &str, state_key: Option<&str>, content: Value) -> Value {
        let mut e = json!({
            "auth_events": ["$auth1", "$auth2"],
            "content": content,
            "depth": 12,
            "event_id": "$ev:example.org",
            "hashes": {"sha256": "aGFzaA"},
            "membership": "join",
            "origin": "example.org",
            "origin_server_ts": 1712345678901u64,
            "prev_events": ["$prev"],
            "prev_state": [],
            "redacts": "$target:example.org",
            "room_id": "!r:example.org",
            "sender": "@alice:example.org",
            "signatures": {"example.org": {"ed25519:a": "c2ln"}},
            "type": ty,
            "unsigned": {"age": 4, "invite_room_state": [{"type": "m.room.name", "content": {"name": "GEHEIM"}}]},
            "age_ts": 17,
            "custom": "GEHEIM",
            "outlier": true
        });
        if let Some(sk) = state_key {
            e["state_key"] = json!(sk);
        }
        e
    }

    struct Case {
        ty: &'static str,
        state_key: Option<&'static str>,
        content: Value,
        /// Expected content after redaction, per room version.
        expected: fn(u8, &Value) -> Value,
    }

    fn keep(content: &Value, keys: &[&str]) -> Value {
        let obj = content.as_object().unwrap();
        Value::Object(
            keys.iter()
                .filter_map(|k| obj.get(*k).map(|v| ((*k).to_owned(), v.clone())))
                .collect(),
        )
    }

    fn cases() -> Vec<Case> {
        vec![
            Case {
                ty: "m.room.member",
                state_key: Some("@alice:example.org"),
                content: json!({
                    "membership": "join",
                    "displayname": "Jürgen GEHEIM",
                    "avatar_url": "mxc://example.org/a",
                    "reason": "GEHEIM",
                    "is_direct": true,
                    "join_authorised_via_users_server": "@bob:example.org",
                    "third_party_invite": {
                        "display_name": "J. GEHEIM",
                        "signed": {"mxid": "@alice:example.org", "token": "tok", "signatures": {"example.org": {"ed25519:a": "c2ln"}}}
                    }
                }),
                expected: |v, c| match v {
                    1..=8 => keep(c, &["membership"]),
                    9 | 10 => keep(c, &["membership", "join_authorised_via_users_server"]),
                    _ => {
                        let mut e = keep(c, &["membership", "join_authorised_via_users_server"]);
                        e["third_party_invite"] =
                            json!({"signed": c["third_party_invite"]["signed"]});
                        e
                    }
                },
            },
            Case {
                ty: "m.room.create",
                state_key: Some(""),
                content: json!({
                    "creator": "@alice:example.org",
                    "room_version": "9",
                    "m.federate": true,
                    "type": "m.space",
                    "predecessor": {"room_id": "!old:example.org", "event_id": "$last"},
                    "additional_creators": ["@bob:example.org"],
                    "custom": "GEHEIM"
                }),
                expected: |v, c| {
                    if v <= 10 {
                        keep(c, &["creator"])
                    } else {
                        c.clone()
                    }
                },
            },
            Case {
                ty: "m.room.join_rules",
                state_key: Some(""),
                content: json!({
                    "join_rule": "restricted",
                    "allow": [{"type": "m.room_membership", "room_id": "!space:example.org"}],
                    "custom": "GEHEIM"
                }),
                expected: |v, c| {
                    if v <= 7 {
                        keep(c, &["join_rule"])
                    } else {
                        keep(c, &["join_rule", "allow"])
                    }
                },
            },
            Case {
                ty: "m.room.power_levels",
                state_key: Some(""),
                content: json!({
                    "ban": 50, "events": {"m.room.name": 50}, "events_default": 0, "invite": 0,
                    "kick": 50, "redact": 50, "state_default": 50,
                    "users": {"@alice:example.org": 100}, "users_default": 0,
                    "notifications": {"room": 50}, "historical": 100, "custom": "GEHEIM"
                }),
                expected: |v, c| {
                    let mut keys = vec![
                        "ban",
                        "events",
                        "events_default",
                        "kick",
                        "redact",
                        "state_default",
                        "users",
                        "users_default",
                    ];
                    if v >= 11 {
                        keys.push("invite");
                    }
                    keep(c, &keys)
                },
            },
            Case {
                ty: "m.room.history_visibility",
                state_key: Some(""),
                content: json!({"history_visibility": "shared", "custom": "GEHEIM"}),
                expected: |_, c| keep(c, &["history_visibility"]),
            },
            Case {
                ty: "m.room.aliases",
                state_key: Some("example.org"),
                content: json!({"aliases": ["#geheim:example.org"], "custom": "x"}),
                expected: |v, c| {
                    if v <= 5 {
                        keep(c, &["aliases"])
                    } else {
                        json!({})
                    }
                },
            },
            Case {
                ty: "m.room.redaction",
                state_key: None,
                content: json!({"redacts": "$target:example.org", "reason": "GEHEIM"}),
                expected: |v, c| {
                    if v <= 10 {
                        json!({})
                    } else {
                        keep(c, &["redacts"])
                    }
                },
            },
            Case {
                ty: "m.room.message",
                state_key: None,
                content: json!({
                    "msgtype": "m.text",
                    "body": "GEHEIM: Übergabe um 14:30 am Güterbahnhof",
                    "format": "org.matrix.custom.html",
                    "formatted_body": "<b>GEHEIM</b>",
                    "m.relates_to": {"m.in_reply_to": {"event_id": "$x"}}
                }),
                expected: |_, _| json!({}),
            },
        ]
    }

    /// State events whose whole content goes in every version (names, topics, encryption, …).
    const BLANKED_STATE: &[&str] = &[
        "m.room.name",
        "m.room.topic",
        "m.room.avatar",
        "m.room.encryption",
        "m.room.server_acl",
        "m.room.guest_access",
        "m.room.third_party_invite",
        "m.room.canonical_alias",
        "m.room.pinned_events",
        "m.room.tombstone",
    ];

    fn redact_value(v: u8, e: &Value) -> (Box<RawValue>, Value) {
        let out = redact_pdu(&to_raw(e), &version(v)).unwrap();
        let parsed: Value = serde_json::from_str(out.get()).unwrap();
        (out, parsed)
    }

    fn assert_canonical(out: &RawValue) {
        let v = crate::federation::canonical::parse_canonical(out).unwrap();
        assert_eq!(
            to_canonical_bytes(&v),
            out.get().as_bytes(),
            "output is not canonical"
        );
    }

    #[test]
    fn every_version_keeps_what_the_spec_lists() {
        for v in ALL_VERSIONS {
            let mut cases = cases();
            cases.extend(BLANKED_STATE.iter().map(|ty| Case {
                ty,
                state_key: Some(""),
                content: json!({"name": "GEHEIM", "topic": "GEHEIM", "algorithm": "m.megolm.v1.aes-sha2", "allow": ["*"], "deny": ["evil.example"], "allow_ip_literals": false, "url": "mxc://a/b", "display_name": "x", "public_key": "k", "alias": "#a:b", "pinned": ["$e"], "replacement_room": "!n:b", "guest_access": "can_join"}),
                expected: |_, _| json!({}),
            }));
            for case in cases {
                let e = event(case.ty, case.state_key, case.content.clone());
                let (out, r) = redact_value(v, &e);
                let ctx = format!("v{v} {}", case.ty);
                let expected = (case.expected)(v, &case.content);
                assert_eq!(r["content"], expected, "{ctx}: content");
                let keys: BTreeSet<&str> =
                    r.as_object().unwrap().keys().map(String::as_str).collect();
                let mut expected_keys = spec_top_level(v);
                if case.state_key.is_none() {
                    expected_keys.remove("state_key");
                }
                assert_eq!(keys, expected_keys, "{ctx}: top-level keys");
                // What is kept is kept unchanged.
                for k in &keys {
                    if *k != "content" {
                        assert_eq!(r[*k], e[*k], "{ctx}: {k}");
                    }
                }
                assert!(r.get("unsigned").is_none(), "{ctx}: unsigned");
                assert!(
                    r.get("redacts").is_none(),
                    "{ctx}: top-level redacts is not kept"
                );
                assert_eq!(r.get("origin").is_some(), v <= 10, "{ctx}: origin");
                // Marked text survives only where the spec keeps it (v11+ m.room.create).
                assert_eq!(
                    out.get().contains("GEHEIM"),
                    expected.to_string().contains("GEHEIM"),
                    "{ctx}: content leaked"
                );
                assert_canonical(&out);
            }
        }
    }

    #[test]
    fn redaction_is_idempotent_and_stable() {
        for v in ALL_VERSIONS {
            for case in cases() {
                let e = event(case.ty, case.state_key, case.content);
                let once = redact_pdu(&to_raw(&e), &version(v)).unwrap();
                let twice = redact_pdu(&once, &version(v)).unwrap();
                assert_eq!(once.get(), twice.get(), "v{v} {}", case.ty);
            }
        }
    }

    #[test]
    fn v12_create_event_without_room_id_and_minimal_events() {
        let create = json!({
            "auth_events": [], "content": {"room_version": "12", "additional_creators": ["@b:example.org"]},
            "depth": 1, "hashes": {"sha256": "x"}, "origin_server_ts": 1, "prev_events": [],
            "sender": "@a:example.org", "signatures": {}, "state_key": "", "type": "m.room.create",
            "unsigned": {"age": 1}
        });
        let (_, r) = redact_value(12, &create);
        assert_eq!(r["content"], create["content"]);
        assert!(r.get("room_id").is_none() && r.get("unsigned").is_none());
        // Escaped keys and type are understood (the JSON is parsed, not matched textually).
        let escaped = r#"{"t\u0079pe":"m.room.me\u0073sage","content":{"body":"GEHEIM"},"sender":"@a:b","unsigned":{"x":1}}"#;
        let out = redact_pdu(&raw(escaped), &RoomVersionId::V10).unwrap();
        assert_eq!(
            out.get(),
            r#"{"content":{},"sender":"@a:b","type":"m.room.message"}"#
        );
    }

    #[test]
    fn malformed_events_are_refused() {
        let v = RoomVersionId::V10;
        assert_eq!(
            redact_pdu(&raw("[1]"), &v).unwrap_err(),
            RedactError::NotObject
        );
        assert_eq!(
            redact_pdu(&raw(r#""x""#), &v).unwrap_err(),
            RedactError::NotObject
        );
        assert_eq!(
            redact_pdu(&raw(r#"{"content":{}}"#), &v).unwrap_err(),
            RedactError::NoType
        );
        assert_eq!(
            redact_pdu(&raw(r#"{"type":7,"content":{}}"#), &v).unwrap_err(),
            RedactError::NoType
        );
        assert_eq!(RedactError::NoType.errcode(), "M_BAD_JSON");
    }

    #[test]
    fn strict_versions_refuse_non_canonical_numbers() {
        for v in 6..=12 {
            for (num, err) in [
                ("1.5", CanonicalError::Float),
                ("1e2", CanonicalError::Float),
                ("9007199254740992", CanonicalError::IntegerOutOfRange),
                ("-9007199254740992", CanonicalError::IntegerOutOfRange),
                ("-0", CanonicalError::NegativeZero),
            ] {
                // Also where redaction would remove it: the event is invalid in the room.
                let e = format!(
                    r#"{{"type":"m.room.message","sender":"@a:b","content":{{"n":{num}}}}}"#
                );
                let got = redact_pdu(&raw(&e), &version(v)).unwrap_err();
                assert_eq!(got, RedactError::NotCanonical(err), "v{v} {num}");
                assert_eq!(got.errcode(), "M_BAD_JSON");
            }
            let ok = r#"{"type":"m.room.message","sender":"@a:b","content":{"n":9007199254740991,"m":-9007199254740991}}"#;
            assert!(redact_pdu(&raw(ok), &version(v)).is_ok());
        }
    }

    #[test]
    fn lenient_versions_redact_events_with_floats_and_big_integers() {
        for v in 1..=5 {
            // Removed numbers vanish.
            let e = r#"{"type":"m.room.message","sender":"@a:b","content":{"body":"GEHEIM","n":1.5,"big":9007199254740993,"z":-0},"depth":3,"unsigned":{"f":2.5}}"#;
            let out = redact_pdu(&raw(e), &version(v)).unwrap();
            assert_eq!(
                out.get(),
                r#"{"content":{},"depth":3,"sender":"@a:b","type":"m.room.message"}"#,
                "v{v}"
            );
            // Kept numbers survive with their value, the rest is redacted and sorted.
            let pl = r#"{"type":"m.room.power_levels","state_key":"","sender":"@a:b","depth":18446744073709551615,"content":{"users":{"@b:b":50.5,"@a:b":100,"@c:b":[1.25]},"ban":9007199254740993,"custom":2.5,"events_default":0},"origin_server_ts":1e3}"#;
            let out = redact_pdu(&raw(pl), &version(v)).unwrap();
            assert_eq!(
                out.get(),
                r#"{"content":{"ban":9007199254740993,"events_default":0,"users":{"@a:b":100,"@b:b":50.5,"@c:b":[1.25]}},"depth":18446744073709551615,"origin_server_ts":1000.0,"sender":"@a:b","state_key":"","type":"m.room.power_levels"}"#,
                "v{v}"
            );
            // A placeholder path that does not survive is not resurrected, and a genuine
            // null where a number was elsewhere stays null.
            let e = r#"{"type":"m.room.power_levels","state_key":"","sender":"@a:b","content":{"users":{"@a:b":null},"custom":{"users":1.5}}}"#;
            let out = redact_pdu(&raw(e), &version(v)).unwrap();
            assert_eq!(
                out.get(),
                r#"{"content":{"users":{"@a:b":null}},"sender":"@a:b","state_key":"","type":"m.room.power_levels"}"#
            );
        }
    }

    // --- signatures survive redaction -------------------------------------------------------

    fn signed_event(
        v: u8,
        key: &SigningKey,
        ty: &str,
        content: Value,
        extra: &[(&str, Value)],
    ) -> CanonicalJsonObject {
        let mut e = json!({
            "auth_events": [], "content": content, "depth": 7,
            "origin_server_ts": 1712345678901u64, "prev_events": [],
            "room_id": if v >= 12 { "!31hneApxJ_1o-63DmFrpeqnkFfWppnzWso1JvH3ogLM" } else { "!r:example.org" },
            "sender": "@alice:example.org", "type": ty,
        });
        if v <= 2 {
            e["event_id"] = json!("$abcdef:example.org");
        }
        for (k, val) in extra {
            e[*k] = val.clone();
        }
        let mut obj: CanonicalJsonObject = serde_json::from_value(e).unwrap();
        let rules = version(v).rules().unwrap();
        hash_and_sign_event("example.org", key.key_pair(), &mut obj, &rules.redaction).unwrap();
        obj
    }

    fn key_map(key: &SigningKey) -> PublicKeyMap {
        let mut set = BTreeMap::new();
        set.insert(key.key_id(), Base64::new(key.public_key().to_vec()));
        BTreeMap::from([("example.org".to_owned(), set)])
    }

    fn redact_object_via_api(
        v: u8,
        obj: &CanonicalJsonObject,
    ) -> (Box<RawValue>, CanonicalJsonObject) {
        let raw = raw(&serde_json::to_string(obj).unwrap());
        let out = redact_pdu(&raw, &version(v)).unwrap();
        let parsed = serde_json::from_str(out.get()).unwrap();
        (out, parsed)
    }

    #[test]
    fn redacted_events_keep_verifying_signatures() {
        let key = SigningKey::generate("gw1").unwrap();
        let keys = key_map(&key);
        for v in ALL_VERSIONS {
            let rules = version(v).rules().unwrap();
            let mut obj = signed_event(
                v,
                &key,
                "m.room.message",
                json!({"msgtype": "m.text", "body": "GEHEIM: Übergabe 14:30"}),
                &[("origin", json!("example.org"))],
            );
            assert_eq!(
                verify_event(&keys, &obj, &rules).unwrap(),
                Verified::All,
                "v{v}"
            );
            obj.insert(
                "unsigned".into(),
                serde_json::from_value(json!({"age": 4})).unwrap(),
            );
            let (out, redacted) = redact_object_via_api(v, &obj);
            assert!(!out.get().contains("GEHEIM"));
            assert_eq!(redacted["hashes"], obj["hashes"]);
            assert_eq!(redacted["signatures"], obj["signatures"]);
            assert_eq!(redacted.get("event_id"), obj.get("event_id"));
            assert_eq!(
                verify_event(&keys, &redacted, &rules).unwrap(),
                Verified::Signatures,
                "v{v}: redacted event keeps valid signatures, hash mismatch"
            );
            // Negative control: a change outside the redaction algorithm breaks the signature.
            let mut tampered = redacted.clone();
            tampered.insert("depth".into(), CanonicalJsonValue::Integer(Int::from(8u8)));
            assert!(verify_event(&keys, &tampered, &rules).is_err(), "v{v}");

            // An event the algorithm leaves unchanged (only `unsigned` goes) still has a
            // matching hash: the output is exactly the signed form.
            let plain = signed_event(v, &key, "m.room.message", json!({}), &[]);
            let (_, redacted) = redact_object_via_api(v, &plain);
            assert_eq!(
                verify_event(&keys, &redacted, &rules).unwrap(),
                Verified::All,
                "v{v}"
            );
        }
    }

    #[test]
    fn redacted_membership_events_verify_with_authorising_server() {
        let key = SigningKey::generate("gw1").unwrap();
        let keys = key_map(&key);
        for v in ALL_VERSIONS {
            let rules = version(v).rules().unwrap();
            let obj = signed_event(
                v,
                &key,
                "m.room.member",
                json!({"membership": "join", "displayname": "GEHEIM", "join_authorised_via_users_server": "@bob:example.org"}),
                &[("state_key", json!("@alice:example.org"))],
            );
            let (out, redacted) = redact_object_via_api(v, &obj);
            assert!(!out.get().contains("GEHEIM"));
            assert_eq!(
                redacted["content"]
                    .as_object()
                    .unwrap()
                    .contains_key("join_authorised_via_users_server"),
                v >= 9,
                "v{v}"
            );
            assert_eq!(
                verify_event(&keys, &redacted, &rules).unwrap(),
                Verified::Signatures,
                "v{v}"
            );
        }
    }

    // --- bodies -------------------------------------------------------------------------------

    fn pdu(n: usize, body: &str) -> String {
        format!(
            r#"{{"auth_events":[],"content":{{"body":{},"msgtype":"m.text"}},"depth":{n},"hashes":{{"sha256":"h"}},"origin_server_ts":1712345678901,"prev_events":[],"room_id":"!r:example.org","sender":"@a:example.org","signatures":{{}},"type":"m.room.message","unsigned":{{"age":{n}}}}}"#,
            serde_json::to_string(body).unwrap()
        )
    }

    const TYPING: &str = r#"{"edu_type":"m.typing","content":{"room_id":"!r:example.org","user_id":"@a:example.org","typing":true}}"#;
    const PRESENCE: &str = r#"{"edu_type":"m.presence","content":{"push":[{"user_id":"@a:example.org","presence":"online","status_msg":"GEHEIM","last_active_ago":5}]}}"#;
    const RECEIPT: &str = r#"{"edu_type":"m.receipt","content":{}}"#;

    #[test]
    fn rebuild_transaction_replaces_pdus_in_place_and_drops_edus() {
        let pdus: Vec<String> = (0..5)
            .map(|i| pdu(i, if i == 2 { "GEHEIM Lage" } else { "Grüße" }))
            .collect();
        // Odd but valid formatting and an unknown member: kept byte for byte.
        let body = format!(
            "{{ \"origin\" : \"example.org\",\"x_custom\":{{\"k\":[1, 2]}},\n \"origin_server_ts\":1712345678901, \"pdus\":[ {} ] , \"edus\":[{TYPING}, {PRESENCE} ,{RECEIPT}] }}",
            pdus.join(" ,\n ")
        );
        let redacted = redact_pdu(&raw(&pdus[2]), &RoomVersionId::V10).unwrap();
        let out = rebuild_transaction(body.as_bytes(), &[(2, redacted.clone())], &[1]).unwrap();
        let out_s = std::str::from_utf8(&out).unwrap();
        assert!(!out_s.contains("GEHEIM"));
        let t = Transaction::parse(&out, &TxnLimits::SPEC).unwrap();
        assert_eq!(t.origin, "example.org");
        assert_eq!(t.origin_server_ts, 1712345678901);
        assert_eq!(t.pdus.len(), 5);
        for (i, p) in t.pdus.iter().enumerate() {
            if i == 2 {
                assert_eq!(p.get(), redacted.get());
            } else {
                assert_eq!(p.get(), pdus[i]);
            }
        }
        assert_eq!(
            t.edus.iter().map(|e| e.get()).collect::<Vec<_>>(),
            [TYPING, RECEIPT]
        );
        assert!(out_s.starts_with(
            "{ \"origin\" : \"example.org\",\"x_custom\":{\"k\":[1, 2]},\n \"origin_server_ts\""
        ));
        crate::federation::json::validate_object(&out, Default::default()).unwrap();

        // The view-based variant gives the same bytes, and refuses a view of another buffer.
        let view = Transaction::parse(body.as_bytes(), &TxnLimits::SPEC).unwrap();
        assert_eq!(
            rebuild_parsed(body.as_bytes(), &view, &[(2, redacted.clone())], &[1]).unwrap(),
            out
        );
        let copy = body.clone().into_bytes();
        assert_eq!(
            rebuild_parsed(&copy, &view, &[(2, redacted.clone())], &[]).unwrap_err(),
            RedactError::NotInBody
        );
        assert_eq!(
            rebuild_parsed(&copy, &view, &[], &[0]).unwrap_err(),
            RedactError::NotInBody
        );
        assert_eq!(
            rebuild_parsed(body.as_bytes(), &view, &[(5, redacted.clone())], &[]).unwrap_err(),
            RedactError::PduIndex { index: 5, count: 5 }
        );

        // Nothing to do: the body comes back unchanged.
        assert_eq!(
            rebuild_transaction(body.as_bytes(), &[], &[]).unwrap(),
            body.as_bytes()
        );
        // Drop every EDU; replace first and last PDU.
        let out = rebuild_transaction(
            body.as_bytes(),
            &[(4, redacted.clone()), (0, redacted.clone())],
            &[2, 0, 1],
        )
        .unwrap();
        let t = Transaction::parse(&out, &TxnLimits::SPEC).unwrap();
        assert!(t.edus.is_empty());
        assert_eq!(t.pdus[0].get(), redacted.get());
        assert_eq!(t.pdus[4].get(), redacted.get());
        assert_eq!(t.pdus[2].get(), pdus[2]);
        assert!(std::str::from_utf8(&out).unwrap().contains(r#""edus":[]"#));
        // A canonical body stays canonical when a canonical redacted PDU is spliced in.
        let canonical_body = format!(
            r#"{{"edus":[{TYPING}],"origin":"example.org","origin_server_ts":1,"pdus":[{}]}}"#,
            pdus.join(",")
        );
        let canonical_body = String::from_utf8(to_canonical_bytes(
            &crate::federation::canonical::parse_canonical(&raw(&canonical_body)).unwrap(),
        ))
        .unwrap();
        let out = rebuild_transaction(canonical_body.as_bytes(), &[(2, redacted)], &[]).unwrap();
        assert!(crate::federation::canonical::is_canonical_str(
            std::str::from_utf8(&out).unwrap()
        ));
    }

    #[test]
    fn rebuild_transaction_refuses_what_it_cannot_do() {
        let body = format!(
            r#"{{"origin":"example.org","origin_server_ts":1,"pdus":[{}],"edus":[{TYPING}]}}"#,
            pdu(0, "a")
        );
        let b = body.as_bytes();
        let r = raw(r#"{"type":"m.room.message"}"#);
        assert_eq!(
            rebuild_transaction(b, &[(1, r.clone())], &[]).unwrap_err(),
            RedactError::PduIndex { index: 1, count: 1 }
        );
        assert_eq!(
            rebuild_transaction(b, &[], &[1]).unwrap_err(),
            RedactError::EduIndex { index: 1, count: 1 }
        );
        assert_eq!(
            rebuild_transaction(b, &[(0, r.clone()), (0, r.clone())], &[]).unwrap_err(),
            RedactError::DuplicateIndex { index: 0 }
        );
        assert_eq!(
            rebuild_transaction(b, &[], &[0, 0]).unwrap_err(),
            RedactError::DuplicateIndex { index: 0 }
        );
        assert_eq!(
            rebuild_transaction(b, &[(0, raw("[1]"))], &[]).unwrap_err(),
            RedactError::ReplacementNotObject { index: 0 }
        );
        let no_edus = format!(
            r#"{{"origin":"example.org","origin_server_ts":1,"pdus":[{}]}}"#,
            pdu(0, "a")
        );
        assert_eq!(
            rebuild_transaction(no_edus.as_bytes(), &[], &[0]).unwrap_err(),
            RedactError::EduIndex { index: 0, count: 0 }
        );
        let dup = format!(r#"{{"origin":"a","pdus":[],"pdus":[{}]}}"#, pdu(0, "a"));
        assert_eq!(
            rebuild_transaction(dup.as_bytes(), &[(0, r.clone())], &[]).unwrap_err(),
            RedactError::Body(EventError::Duplicate("pdus"))
        );
        assert_eq!(
            rebuild_transaction(b"[]", &[], &[]).unwrap_err(),
            RedactError::Body(EventError::NotObject)
        );
        assert_eq!(
            rebuild_transaction(b"{", &[], &[]).unwrap_err(),
            RedactError::Body(EventError::NotJson)
        );
        assert_eq!(
            RedactError::Body(EventError::NotJson).errcode(),
            "M_NOT_JSON"
        );
    }

    #[test]
    fn replace_events_in_send_join_and_backfill_responses() {
        let p: Vec<String> = (0..4).map(|i| pdu(i, &format!("GEHEIM {i}"))).collect();
        let body = format!(
            r#"{{"origin":"example.org","members_omitted":false,"state":[{}, {}],"auth_chain":[{}],"event":{},"servers_in_room":["example.org"]}}"#,
            p[0], p[1], p[2], p[3]
        );
        let ep = by_id("send_join_v2").unwrap();
        let found = pdus_in(ep, Direction::Response, body.as_bytes()).unwrap();
        let redacted: Vec<Box<RawValue>> = found
            .iter()
            .map(|f| redact_pdu(f.raw, &RoomVersionId::V10).unwrap())
            .collect();
        // Replace state[1] (index 1) and event (index 3).
        let out = replace_events(
            body.as_bytes(),
            ep,
            Direction::Response,
            &[(3, redacted[3].clone()), (1, redacted[1].clone())],
        )
        .unwrap();
        let again = pdus_in(ep, Direction::Response, &out).unwrap();
        let got: Vec<&str> = again.iter().map(|f| f.raw.get()).collect();
        assert_eq!(
            got,
            [
                p[0].as_str(),
                redacted[1].get(),
                p[2].as_str(),
                redacted[3].get()
            ]
        );
        assert!(std::str::from_utf8(&out)
            .unwrap()
            .ends_with(r#","servers_in_room":["example.org"]}"#));

        // Backfill, all PDUs.
        let body = format!(
            r#"{{"origin":"example.org","origin_server_ts":1,"pdus":[{}]}}"#,
            p.join(",")
        );
        let ep = by_id("backfill").unwrap();
        let all: Vec<_> = (0..4).map(|i| (i, redacted[i].clone())).collect();
        let out = replace_events(body.as_bytes(), ep, Direction::Response, &all).unwrap();
        assert!(!std::str::from_utf8(&out).unwrap().contains("GEHEIM"));
        let again = pdus_in(ep, Direction::Response, &out).unwrap();
        assert_eq!(again.len(), 4);
        for (i, f) in again.iter().enumerate() {
            assert_eq!(f.raw.get(), redacted[i].get());
        }
        assert_eq!(
            replace_events(
                body.as_bytes(),
                ep,
                Direction::Response,
                &[(4, redacted[0].clone())]
            )
            .unwrap_err(),
            RedactError::EventIndex { index: 4, count: 4 }
        );
        assert!(matches!(
            replace_events(b"{}", ep, Direction::Response, &[]).unwrap_err(),
            RedactError::Locate(LocateError::Missing { .. })
        ));
    }

    #[test]
    fn replace_events_in_invites_both_forms() {
        let p = pdu(1, "GEHEIM Einladung");
        let red = redact_pdu(&raw(&p), &RoomVersionId::V10).unwrap();
        // v1 invite response: [200, {"event": …}]
        let body = format!("[200, {{\"event\":{p}}}]");
        let ep = by_id("invite_v1").unwrap();
        let out = replace_events(
            body.as_bytes(),
            ep,
            Direction::Response,
            &[(0, red.clone())],
        )
        .unwrap();
        assert_eq!(
            out,
            format!("[200, {{\"event\":{}}}]", red.get()).into_bytes()
        );
        // v2 invite request: event plus stripped state; replace the stripped state only.
        let stripped = r#"{"type":"m.room.name","state_key":"","sender":"@a:example.org","content":{"name":"GEHEIM"}}"#;
        let body =
            format!(r#"{{"room_version":"10","event":{p},"invite_room_state":[{stripped}]}}"#);
        let ep = by_id("invite_v2").unwrap();
        let red_stripped = redact_pdu(&raw(stripped), &RoomVersionId::V10).unwrap();
        assert_eq!(
            red_stripped.get(),
            r#"{"content":{},"sender":"@a:example.org","state_key":"","type":"m.room.name"}"#
        );
        let out = replace_events(
            body.as_bytes(),
            ep,
            Direction::Request,
            &[(1, red_stripped.clone())],
        )
        .unwrap();
        let again = pdus_in(ep, Direction::Request, &out).unwrap();
        assert_eq!(again[0].raw.get(), p);
        assert_eq!(again[1].raw.get(), red_stripped.get());
        // v1 invite request: the body is the event; its unsigned holds stripped state.
        let body = p.replace(
            r#""unsigned":{"age":1}"#,
            &format!(r#""unsigned":{{"invite_room_state":[{stripped}]}}"#),
        );
        let ep = by_id("invite_v1").unwrap();
        assert_eq!(
            pdus_in(ep, Direction::Request, body.as_bytes())
                .unwrap()
                .len(),
            2
        );
        let red_body = redact_pdu(&raw(&body), &RoomVersionId::V10).unwrap();
        let out = replace_events(
            body.as_bytes(),
            ep,
            Direction::Request,
            &[(0, red_body.clone())],
        )
        .unwrap();
        assert_eq!(out, red_body.get().as_bytes());
        let out = replace_events(
            body.as_bytes(),
            ep,
            Direction::Request,
            &[(1, red_stripped.clone())],
        )
        .unwrap();
        let again = pdus_in(ep, Direction::Request, &out).unwrap();
        assert_eq!(again[1].raw.get(), red_stripped.get());
        assert!(again[0].raw.get().contains("GEHEIM Einladung"));
        // Both at once: nested ranges are refused.
        assert_eq!(
            replace_events(
                body.as_bytes(),
                ep,
                Direction::Request,
                &[(0, red_body), (1, red_stripped)]
            )
            .unwrap_err(),
            RedactError::Overlap { index: 1 }
        );
    }
}
