//! What the client-server listener reads in the bodies it inspects: the invitees of
//! `createRoom`, `/invite` and `m.room.member` state, and the `createRoom` rewrite of public
//! rooms (`creation_content["m.federate"] = false`).
//!
//! Every function returns the JSON value that is forwarded: the body as inspected, serialised
//! again, so the homeserver reads exactly what the guard judged (no second parser's reading of
//! duplicate keys or odd whitespace).
use serde_json::{Map, Value};

use crate::ti::TiDenial;

/// At most this many users a `createRoom` may invite (`invite` and `m.room.member` invites in
/// `initial_state` together).
pub const MAX_CREATE_ROOM_INVITEES: usize = 1;

/// Why an inspected body is refused before any TI check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Not JSON at all: 400 `M_NOT_JSON`.
    NotJson,
    /// JSON of the wrong shape: 400 `M_BAD_JSON`.
    BadJson(&'static str),
    /// An invitee that is no user ID: 400 `M_INVALID_PARAM`.
    InvalidParam(&'static str),
    /// A TI client rule: 403 (recorded like every TI refusal).
    Denied(TiDenial),
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, Problem> {
    match serde_json::from_slice::<Value>(body) {
        Err(_) => Err(Problem::NotJson),
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Problem::BadJson("the request body must be a JSON object")),
    }
}

/// A user ID `@localpart:server`; returns the server name.
pub fn mxid_server(user_id: &str) -> Option<&str> {
    crate::federation::server_name::split_user_id(user_id).map(|(_, server)| server)
}

fn invitee(user_id: &str) -> Result<String, Problem> {
    match mxid_server(user_id) {
        Some(_) => Ok(user_id.to_string()),
        None => Err(Problem::InvalidParam("the invitee is not a Matrix user ID")),
    }
}

fn rule(msg: &str) -> Problem {
    Problem::Denied(TiDenial::ClientRule(msg.to_string()))
}

/// `createRoom`: its invitees (at most [`MAX_CREATE_ROOM_INVITEES`], else refused) and the
/// body to forward (public rooms get `m.federate: false`). A room is public if `visibility` is
/// `public`, `preset` is `public_chat`, or `initial_state` sets `m.room.join_rules` to
/// `public`. Third-party invites (`invite_3pid`) are refused: they name no user to check.
pub fn create_room(body: &[u8]) -> Result<(Vec<String>, Value), Problem> {
    let mut obj = parse_object(body)?;
    let mut invitees = Vec::new();
    match obj.get("invite") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for i in items {
                let u = i
                    .as_str()
                    .ok_or(Problem::BadJson("`invite` must be a list of user IDs"))?;
                invitees.push(invitee(u)?);
            }
        }
        Some(_) => return Err(Problem::BadJson("`invite` must be a list of user IDs")),
    }
    match obj.get("invite_3pid") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) if a.is_empty() => {}
        Some(Value::Array(_)) => {
            return Err(rule(
                "invites by third-party identifier are not permitted in the TI-Messenger profile",
            ))
        }
        Some(_) => return Err(Problem::BadJson("`invite_3pid` must be a list")),
    }
    let mut public_join_rule = false;
    match obj.get("initial_state") {
        None | Some(Value::Null) => {}
        Some(Value::Array(events)) => {
            for ev in events {
                let ev = ev
                    .as_object()
                    .ok_or(Problem::BadJson("`initial_state` must be a list of events"))?;
                let content = ev.get("content");
                let field = |k: &str| content.and_then(|c| c.get(k)).and_then(Value::as_str);
                match ev.get("type").and_then(Value::as_str) {
                    Some("m.room.member") if field("membership") == Some("invite") => {
                        let key = ev.get("state_key").and_then(Value::as_str).unwrap_or("");
                        invitees.push(invitee(key)?);
                    }
                    Some("m.room.join_rules") if field("join_rule") == Some("public") => {
                        public_join_rule = true;
                    }
                    _ => {}
                }
            }
        }
        Some(_) => return Err(Problem::BadJson("`initial_state` must be a list of events")),
    }
    if invitees.len() > MAX_CREATE_ROOM_INVITEES {
        return Err(rule(
            "a room may be created with at most one invitee in the TI-Messenger profile",
        ));
    }
    let public = obj.get("visibility").and_then(Value::as_str) == Some("public")
        || obj.get("preset").and_then(Value::as_str) == Some("public_chat")
        || public_join_rule;
    if public {
        let cc = obj
            .entry("creation_content")
            .or_insert_with(|| Value::Object(Map::new()));
        if cc.is_null() {
            *cc = Value::Object(Map::new());
        }
        let cc = cc
            .as_object_mut()
            .ok_or(Problem::BadJson("`creation_content` must be an object"))?;
        cc.insert("m.federate".into(), Value::Bool(false));
    }
    Ok((invitees, Value::Object(obj)))
}

/// `/rooms/{roomId}/invite`: the invitee (`user_id`) and the body to forward. A third-party
/// invite (no `user_id`) is refused.
pub fn invite(body: &[u8]) -> Result<(String, Value), Problem> {
    let obj = parse_object(body)?;
    let who =
        match obj.get("user_id") {
            Some(Value::String(u)) => invitee(u)?,
            Some(_) => return Err(Problem::BadJson("`user_id` must be a string")),
            None => return Err(rule(
                "invites by third-party identifier are not permitted in the TI-Messenger profile",
            )),
        };
    Ok((who, Value::Object(obj)))
}

/// `PUT /rooms/{roomId}/state/m.room.member/{stateKey}`: the invitee (the state key) if the
/// content's `membership` is `invite`, and the body to forward.
pub fn member_state(body: &[u8], state_key: &str) -> Result<(Option<String>, Value), Problem> {
    let obj = parse_object(body)?;
    let who = match obj.get("membership") {
        Some(Value::String(m)) if m == "invite" => Some(invitee(state_key)?),
        _ => None,
    };
    Ok((who, Value::Object(obj)))
}

/// `PUT /directory/list/room/{roomId}`: whether the room is to be published (`visibility:
/// public`) and the body to forward.
pub fn directory_visibility(body: &[u8]) -> Result<(bool, Value), Problem> {
    let obj = parse_object(body)?;
    let public = match obj.get("visibility") {
        Some(Value::String(v)) => v == "public",
        None | Some(Value::Null) => false,
        Some(_) => return Err(Problem::BadJson("`visibility` must be a string")),
    };
    Ok((public, Value::Object(obj)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cr(v: Value) -> Result<(Vec<String>, Value), Problem> {
        create_room(v.to_string().as_bytes())
    }

    #[test]
    fn create_room_invitees_and_the_limit() {
        let (i, out) = cr(json!({"invite": ["@bob:hs2"], "name": "x"})).unwrap();
        assert_eq!(i, ["@bob:hs2"]);
        assert_eq!(out, json!({"invite": ["@bob:hs2"], "name": "x"}));
        assert_eq!(cr(json!({})).unwrap().0, Vec::<String>::new());
        for two in [
            json!({"invite": ["@bob:hs2", "@carl:hs3"]}),
            json!({"invite": ["@bob:hs2", "@bob:hs2"]}),
            json!({"invite": ["@bob:hs2"], "initial_state": [
                {"type": "m.room.member", "state_key": "@carl:hs3", "content": {"membership": "invite"}}]}),
        ] {
            assert!(
                matches!(
                    cr(two.clone()),
                    Err(Problem::Denied(TiDenial::ClientRule(_)))
                ),
                "{two}"
            );
        }
        // An invite hidden in initial_state alone counts as the one invitee.
        let (i, _) = cr(json!({"initial_state": [
            {"type": "m.room.member", "state_key": "@carl:hs3", "content": {"membership": "invite"}},
            {"type": "m.room.member", "state_key": "@dora:hs3", "content": {"membership": "join"}}]}))
        .unwrap();
        assert_eq!(i, ["@carl:hs3"]);
    }

    #[test]
    fn create_room_refusals() {
        assert_eq!(create_room(b"{not json"), Err(Problem::NotJson));
        assert_eq!(create_room(b""), Err(Problem::NotJson));
        assert!(matches!(cr(json!([1])), Err(Problem::BadJson(_))));
        assert!(matches!(
            cr(json!({"invite": "@bob:hs2"})),
            Err(Problem::BadJson(_))
        ));
        assert!(matches!(
            cr(json!({"invite": [7]})),
            Err(Problem::BadJson(_))
        ));
        assert!(matches!(
            cr(json!({"invite": ["bob"]})),
            Err(Problem::InvalidParam(_))
        ));
        assert!(matches!(
            cr(json!({"invite_3pid": [{"medium": "email", "address": "a@b"}]})),
            Err(Problem::Denied(_))
        ));
        assert!(cr(json!({"invite_3pid": []})).is_ok());
        assert!(matches!(
            cr(json!({"visibility": "public", "creation_content": "x"})),
            Err(Problem::BadJson(_))
        ));
    }

    #[test]
    fn public_rooms_do_not_federate() {
        for v in [
            json!({"visibility": "public"}),
            json!({"preset": "public_chat"}),
            json!({"visibility": "public", "creation_content": {"m.federate": true, "k": 1}}),
            json!({"preset": "public_chat", "creation_content": null}),
            json!({"initial_state": [{"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "public"}}]}),
        ] {
            let (_, out) = cr(v.clone()).unwrap();
            assert_eq!(out["creation_content"]["m.federate"], json!(false), "{v}");
        }
        let (_, out) =
            cr(json!({"visibility": "public", "creation_content": {"m.federate": true, "k": 1}}))
                .unwrap();
        assert_eq!(out["creation_content"]["k"], json!(1), "other keys kept");
        // Private rooms are forwarded as they are.
        for v in [
            json!({"visibility": "private", "preset": "private_chat"}),
            json!({"preset": "trusted_private_chat", "creation_content": {"m.federate": true}}),
        ] {
            assert_eq!(cr(v.clone()).unwrap().1, v);
        }
    }

    #[test]
    fn invite_and_member_state() {
        assert_eq!(
            invite(br#"{"user_id":"@bob:hs2","reason":"hi"}"#)
                .unwrap()
                .0,
            "@bob:hs2"
        );
        assert!(matches!(
            invite(br#"{"id_server":"x","medium":"email","address":"a@b"}"#),
            Err(Problem::Denied(_))
        ));
        assert!(matches!(
            invite(br#"{"user_id":5}"#),
            Err(Problem::BadJson(_))
        ));
        assert!(matches!(
            invite(br#"{"user_id":"bob"}"#),
            Err(Problem::InvalidParam(_))
        ));
        assert_eq!(invite(b"nope"), Err(Problem::NotJson));
        assert_eq!(
            member_state(br#"{"membership":"invite"}"#, "@bob:hs2")
                .unwrap()
                .0,
            Some("@bob:hs2".to_string())
        );
        assert_eq!(
            member_state(br#"{"membership":"join","displayname":"x"}"#, "@me:hs1")
                .unwrap()
                .0,
            None
        );
        assert!(matches!(
            member_state(br#"{"membership":"invite"}"#, ""),
            Err(Problem::InvalidParam(_))
        ));
        assert_eq!(member_state(b"[", "@bob:hs2"), Err(Problem::NotJson));
    }

    #[test]
    fn directory_visibility_reads_public() {
        assert!(
            directory_visibility(br#"{"visibility":"public"}"#)
                .unwrap()
                .0
        );
        assert!(
            !directory_visibility(br#"{"visibility":"private"}"#)
                .unwrap()
                .0
        );
        assert!(!directory_visibility(br#"{}"#).unwrap().0);
        assert!(matches!(
            directory_visibility(br#"{"visibility":1}"#),
            Err(Problem::BadJson(_))
        ));
        assert_eq!(directory_visibility(b"x"), Err(Problem::NotJson));
    }
}
