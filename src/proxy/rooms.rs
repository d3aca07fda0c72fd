//! Learning room versions from the traffic (needed to redact correctly).
//!
//! Sources: `m.room.create` events (PDUs in transactions and responses, stripped state in
//! invites/knocks; no `room_version` in the content means version 1), the `room_version` of
//! `make_join`/`make_knock` responses and of v2 invite requests, and version 1 for the room of a
//! v1 invite (those are for room versions 1 and 2 only). The first version learned for
//! a room wins; a conflicting claim is logged and ignored (`store::Store::set_room_version`).
use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::guard::Guard;
use crate::federation::catalog::{Direction as Part, Endpoint, Handler};
use crate::policy::Units;

#[derive(Deserialize)]
struct TopVersion<'a> {
    #[serde(borrow, default)]
    room_version: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct CreateContent<'a> {
    #[serde(borrow, default)]
    room_version: Option<Cow<'a, str>>,
}

fn create_version(content: &RawValue) -> Option<String> {
    let c: CreateContent<'_> = serde_json::from_str(content.get()).ok()?;
    Some(
        c.room_version
            .map(|v| v.into_owned())
            .unwrap_or_else(|| "1".to_string()),
    )
}

/// The room id of a room version 12+ create event, which has no `room_id`: `!` followed by the
/// event's reference hash (the create event's id with `!` instead of `$`). `None` for room
/// versions that carry `room_id` in the create event, or a malformed event.
pub fn create_room_id(pdu: &crate::federation::pdu::PduView<'_>) -> Option<String> {
    let version = crate::federation::redact::parse_room_version(&create_version(pdu.content)?)?;
    let rules = version.rules()?;
    if !rules.authorization.room_create_event_id_as_room_id {
        return None;
    }
    let obj: ruma::CanonicalJsonObject = serde_json::from_str(pdu.raw.get()).ok()?;
    let hash = ruma::signatures::reference_hash(&obj, &rules).ok()?;
    Some(format!("!{hash}"))
}

fn record(guard: &Guard, room: &str, version: &str, from: &str) {
    match guard.store().set_room_version(room, version, from) {
        Ok(claim) => tracing::debug!(room, version, from, ?claim, "room version"),
        Err(e) => tracing::warn!(room, version, from, "cannot store room version: {e}"),
    }
}

/// Records every room version the body reveals.
pub fn learn(
    guard: &Guard,
    endpoint: &'static Endpoint,
    part: Part,
    room_hint: Option<&str>,
    body: &[u8],
    units: &Units<'_>,
) {
    let top_level = (endpoint.handler == Handler::Template && part == Part::Response)
        || (endpoint.id == "invite_v2" && part == Part::Request);
    if let (true, Some(room)) = (top_level, room_hint) {
        if let Ok(TopVersion {
            room_version: Some(v),
        }) = serde_json::from_slice::<TopVersion<'_>>(body)
        {
            record(guard, room, &v, endpoint.id);
        }
    }
    // A v1 invite is for a room of version 1 or 2 (the spec sends every other version through
    // v2 invites); both share the event format and redaction rules, so version 1 is what the
    // guard needs to judge it. Only for a room it knows nothing about yet.
    if let (true, Some(room)) = (
        endpoint.id == "invite_v1" && part == Part::Request,
        room_hint,
    ) {
        if matches!(guard.store().room_version(room), Ok(None)) {
            record(guard, room, "1", "invite_v1");
        }
    }
    for p in units
        .pdus
        .iter()
        .filter(|p| p.event_type == "m.room.create")
    {
        let room = p
            .room_id
            .as_deref()
            .map(str::to_string)
            .or_else(|| create_room_id(p))
            .or_else(|| room_hint.map(str::to_string));
        if let (Some(room), Some(v)) = (room, create_version(p.content)) {
            record(guard, &room, &v, "create_event");
        }
    }
    for e in units
        .events
        .iter()
        .filter(|e| e.event_type == "m.room.create")
    {
        if let (Some(room), Some(v)) = (
            e.room_id.as_deref().or(room_hint),
            create_version(e.content),
        ) {
            record(guard, room, &v, "stripped_create");
        }
    }
}
