//! Whether an `m.room.create` PDU may teach the guard its room's version: the create auth
//! rules of the version it claims, and the guard's own check of its signatures and content
//! hash.
//!
//! Auth rules checked (spec, "Authorization rules", `m.room.create`, all room versions):
//! `state_key` is `""`; no `prev_events` (and no `auth_events`: the create event has nothing
//! to be authorised by); `content.room_version`, if present, is a string naming a version the
//! guard knows (absent means version 1); versions 1–11: the event has a `room_id` whose server
//! is the sender's server; version 12+: no `room_id` (the room id is `!` + the event's
//! reference hash, [`super::create_room_id`]); versions 1–10: `content.creator` is present;
//! version 12+: `content.additional_creators`, if present, lists valid user ids.
//!
//! The signature check is the one of `proxy::integrity` (`keys::RemoteKeys::verify_pdu`):
//! the sender's server must have signed (in versions 1–11 that is the room id's server), and
//! the content hash must match — a create event redacted on the way may have lost its
//! `room_version` (versions 1–10 keep only `creator`), so only an intact one teaches.
use std::time::SystemTime;

use ruma::RoomVersionId;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::federation::pdu::PduView;
use crate::federation::redact;
use crate::keys::PduCheck;
use crate::proxy::guard::{Guard, GuardKeyFetcher};

/// A create event that passed the auth rules of the version it claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Its room (from `room_id`, or derived from the event in version 12+).
    pub room: String,
    /// The version it claims (as written; `"1"` when absent).
    pub version: String,
    parsed: RoomVersionId,
}

#[derive(Deserialize)]
struct Dag {
    prev_events: Option<Vec<IgnoredAny>>,
    auth_events: Option<Vec<IgnoredAny>>,
}

#[derive(Deserialize)]
struct Content<'a> {
    #[serde(borrow, default)]
    room_version: Option<&'a RawValue>,
    #[serde(borrow, default)]
    creator: Option<&'a RawValue>,
    #[serde(default)]
    additional_creators: Option<serde_json::Value>,
}

/// The server part of a room or user id (after the first `:`).
fn server_of(id: &str) -> Option<&str> {
    id.split_once(':').map(|(_, s)| s).filter(|s| !s.is_empty())
}

/// The create auth rules for `pdu` (an `m.room.create` PDU); `Err` names the rule broken.
pub fn auth_rules(pdu: &PduView<'_>) -> Result<Claim, &'static str> {
    if pdu.event_type != "m.room.create" {
        return Err("not a create event");
    }
    if pdu.state_key.as_deref() != Some("") {
        return Err("state_key is not empty");
    }
    let dag: Dag = serde_json::from_str(pdu.raw.get()).map_err(|_| "malformed event")?;
    if !dag.prev_events.is_some_and(|p| p.is_empty()) {
        return Err("prev_events not empty");
    }
    if !dag.auth_events.is_some_and(|a| a.is_empty()) {
        return Err("auth_events not empty");
    }
    let content: Content<'_> =
        serde_json::from_str(pdu.content.get()).map_err(|_| "malformed content")?;
    let version = match content.room_version {
        None => "1".to_owned(),
        Some(raw) => {
            serde_json::from_str::<String>(raw.get()).map_err(|_| "room_version is not a string")?
        }
    };
    let parsed = redact::parse_room_version(&version).ok_or("unknown room version")?;
    let rules = parsed.rules().ok_or("unknown room version")?;
    let auth = &rules.authorization;
    let room = if auth.room_create_event_id_as_room_id {
        if pdu.room_id.is_some() {
            return Err("room_id present");
        }
        super::create_room_id(pdu).ok_or("no reference hash")?
    } else {
        let room = pdu.room_id.as_deref().ok_or("room_id missing")?;
        match (server_of(room), server_of(&pdu.sender)) {
            (Some(r), Some(s)) if r == s => room.to_owned(),
            _ => return Err("room_id server is not the sender's server"),
        }
    };
    if !auth.use_room_create_sender && content.creator.is_none() {
        return Err("creator missing");
    }
    if auth.additional_room_creators {
        if let Some(extra) = &content.additional_creators {
            let ok = extra.as_array().is_some_and(|a| {
                a.iter()
                    .all(|u| u.as_str().is_some_and(|u| ruma::UserId::parse(u).is_ok()))
            });
            if !ok {
                return Err("additional_creators malformed");
            }
        }
    }
    Ok(Claim {
        room,
        version,
        parsed,
    })
}

/// The guard's own check of the create event's signatures and content hash (keys fetched as
/// for every PDU check). `Err` says why it does not count as verified.
pub async fn verify(guard: &Guard, pdu: &PduView<'_>, claim: &Claim) -> Result<(), String> {
    let fetcher = GuardKeyFetcher(guard);
    match guard
        .remote_keys()
        .verify_pdu_or_fetch(&fetcher, pdu.raw, &claim.parsed, SystemTime::now())
        .await
    {
        Ok(PduCheck::Verified) => Ok(()),
        Ok(PduCheck::HashMismatch) => Err("content hash mismatch".into()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn judge(v: serde_json::Value) -> Result<Claim, &'static str> {
        let raw: Box<RawValue> = serde_json::from_value(v).unwrap();
        let pdu = PduView::parse(&raw).unwrap();
        auth_rules(&pdu)
    }

    fn create(room: Option<&str>, sender: &str, content: serde_json::Value) -> serde_json::Value {
        let mut v = json!({
            "auth_events": [], "prev_events": [], "depth": 1, "hashes": {"sha256": "x"},
            "origin_server_ts": 1, "sender": sender, "type": "m.room.create", "state_key": "",
            "content": content, "signatures": {}
        });
        if let Some(r) = room {
            v["room_id"] = json!(r);
        }
        v
    }

    #[test]
    fn a_create_event_of_the_room_servers_sender_passes() {
        let c = judge(create(
            Some("!r:hs1.test"),
            "@a:hs1.test",
            json!({"creator": "@a:hs1.test", "room_version": "10"}),
        ))
        .unwrap();
        assert_eq!((c.room.as_str(), c.version.as_str()), ("!r:hs1.test", "10"));
        // No room_version: version 1.
        let c = judge(create(
            Some("!r:hs1.test"),
            "@a:hs1.test",
            json!({"creator": "@a:hs1.test"}),
        ))
        .unwrap();
        assert_eq!(c.version, "1");
        // Version 11 takes the creator from the sender.
        assert!(judge(create(
            Some("!r:hs1.test"),
            "@a:hs1.test",
            json!({"room_version": "11"})
        ))
        .is_ok());
    }

    #[test]
    fn the_create_auth_rules_refuse_what_they_must() {
        let ok = || {
            create(
                Some("!r:hs1.test"),
                "@a:hs1.test",
                json!({"creator": "@a:hs1.test", "room_version": "10"}),
            )
        };
        let cases: Vec<(serde_json::Value, &str)> = vec![
            (
                create(
                    Some("!r:hs1.test"),
                    "@m:evil.test",
                    json!({"creator": "@m:evil.test", "room_version": "10"}),
                ),
                "room_id server is not the sender's server",
            ),
            (
                create(
                    Some("!r:hs1.test"),
                    "@a:hs1.test",
                    json!({"creator": "@a:hs1.test", "room_version": "13"}),
                ),
                "unknown room version",
            ),
            (
                create(
                    Some("!r:hs1.test"),
                    "@a:hs1.test",
                    json!({"creator": "@a:hs1.test", "room_version": 10}),
                ),
                "room_version is not a string",
            ),
            (
                create(
                    Some("!r:hs1.test"),
                    "@a:hs1.test",
                    json!({"room_version": "10"}),
                ),
                "creator missing",
            ),
            (
                {
                    let mut v = ok();
                    v["prev_events"] = json!(["$p"]);
                    v
                },
                "prev_events not empty",
            ),
            (
                {
                    let mut v = ok();
                    v["auth_events"] = json!(["$a"]);
                    v
                },
                "auth_events not empty",
            ),
            (
                {
                    let mut v = ok();
                    v["state_key"] = json!("x");
                    v
                },
                "state_key is not empty",
            ),
            (
                create(
                    Some("!r:hs1.test"),
                    "@a:hs1.test",
                    json!({"room_version": "12"}),
                ),
                "room_id present",
            ),
            (
                create(
                    None,
                    "@a:hs1.test",
                    json!({"room_version": "12", "additional_creators": ["not a user"]}),
                ),
                "additional_creators malformed",
            ),
        ];
        for (v, why) in cases {
            assert_eq!(judge(v).unwrap_err(), why);
        }
    }

    #[test]
    fn a_version_12_room_is_named_by_its_create_event() {
        let v = create(None, "@a:hs1.test", json!({"room_version": "12"}));
        let c = judge(v.clone()).unwrap();
        assert!(c.room.starts_with('!') && !c.room.contains(':'));
        // Another claimed version is another event, hence another room.
        let mut other = v;
        other["content"]["room_version"] = json!("11");
        other["content"]["x"] = json!(1);
        assert!(judge(other).is_err(), "v11 needs a room_id");
    }
}
