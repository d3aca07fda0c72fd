//! User-typed text outside room events: the fields of user-data and directory responses, and
//! the per-device messages of to-device EDUs — where they sit, and how they are removed.
//!
//! # Design notes
//!
//! * **Which fields, where** (federation responses as Synapse 1.163 sends them):
//!
//!   | endpoint | fields judged (path) |
//!   |---|---|
//!   | `query_profile`, `query_generic` with `queryType` `profile` | every top-level member: `displayname`, `avatar_url`, extended profile fields (MSC4133) |
//!   | `user_devices` | `devices[i].device_display_name`, `devices[i].keys.unsigned.device_display_name` |
//!   | `user_keys_query`, `query_generic` with `client_keys` | `device_keys[user][device].unsigned.device_display_name` |
//!   | `public_rooms_get`, `public_rooms_post` | `chunk[i].name`, `.topic`, `.canonical_alias`, `.aliases`, `.avatar_url` |
//!   | `hierarchy` | `room.` and `children[i].` `name`, `topic`, `canonical_alias`, `avatar_url` (the `children_state` events are judged as events) |
//!
//!   These are the fields that can be removed one by one. Everything else of these responses
//!   and of every other response (key material a client uploaded, custom profile field names,
//!   `room_type`, error messages, …) is judged too, as response text
//!   (`federation::response_text`), which refuses the whole response when a rule matches.
//!   Synapse sends device display names over federation only with
//!   `allow_device_name_lookup_over_federation` (default off).
//! * **Removal is per field**: the key is removed from its object, never a whole device, room
//!   or profile (the identity — `user_id`, `device_id`, `room_id`, keys — stays). `aliases`
//!   (a deprecated list) is judged as one value and removed as a whole. A value that is `null`
//!   carries no text and is not judged (its key is response text); any other non-string value
//!   (extended profile fields may be objects) is judged as every key, string and number in it,
//!   unescaped.
//! * Responses are unsigned, so removal re-serialises the body (`serde_json`); the signed
//!   objects inside (device keys) keep their signatures because `unsigned` is outside them and
//!   nothing else changes value.
//! * **To-device** (`m.direct_to_device`, content `{sender, type, message_id, messages: {user:
//!   {device or "*": content}}}`): one [`ToDeviceMessage`] per (user, device). Removal
//!   ([`without_messages`]) rebuilds the EDU as canonical JSON without the refused entries; a
//!   user left without devices is removed, an EDU left without messages is `None` (the caller
//!   drops it). An EDU with a number canonical JSON cannot hold (float, beyond 2^53) cannot be
//!   rebuilt: that is an error, and the caller refuses (fail closed).
//! * Shapes the guard does not understand (e.g. `chunk` not an array) are errors, never
//!   skipped: the caller refuses instead of releasing unjudged text. Errors carry field names,
//!   never payload.
use std::borrow::Cow;
use std::fmt;

use ruma::CanonicalJsonValue;
use serde_json::value::RawValue;

use super::canonical::{parse_canonical, to_canonical_bytes};
use super::catalog::Endpoint;
use super::pdu::{array_elements, for_each_member, str_field, EduView};

/// The EDU type of to-device messages.
pub const TO_DEVICE_EDU: &str = "m.direct_to_device";

/// What a user-data field is. [`FieldKind::as_str`] is the name rules filter on (the key the
/// same text has in room event content: `displayname`, `name`, `topic`, `alias`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldKind {
    /// A user's display name (profile).
    Displayname,
    /// A user's avatar (`mxc://` URI).
    AvatarUrl,
    /// Any other profile field (extended profiles); the rule filter also sees its key.
    ProfileField,
    /// A device's display name.
    DeviceDisplayName,
    /// A room's name.
    RoomName,
    /// A room's topic.
    RoomTopic,
    /// A room alias (`canonical_alias`, `aliases`).
    RoomAlias,
}

impl FieldKind {
    /// Field name for rules, logs and metrics (bounded).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Displayname => "displayname",
            Self::AvatarUrl => "avatar_url",
            Self::ProfileField => "profile_field",
            Self::DeviceDisplayName => "device_display_name",
            Self::RoomName => "name",
            Self::RoomTopic => "topic",
            Self::RoomAlias => "alias",
        }
    }
}

/// One step of a [`FieldPath`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathSeg {
    /// An object member (unescaped key).
    Key(String),
    /// An array element.
    Index(usize),
}

/// Where a field sits in a body: the steps from the root to the field's key (the last step is
/// always a [`PathSeg::Key`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct FieldPath(pub Vec<PathSeg>);

impl FieldPath {
    fn child(&self, seg: PathSeg) -> FieldPath {
        let mut v = self.0.clone();
        v.push(seg);
        FieldPath(v)
    }
    fn key(&self, k: &str) -> FieldPath {
        self.child(PathSeg::Key(k.to_owned()))
    }
}

/// JSON pointer notation (RFC 6901), e.g. `/chunk/0/name`. Contains identifiers (user and
/// device ids as keys), never field values.
impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.0 {
            match s {
                PathSeg::Key(k) => write!(f, "/{}", k.replace('~', "~0").replace('/', "~1"))?,
                PathSeg::Index(i) => write!(f, "/{i}")?,
            }
        }
        Ok(())
    }
}

/// One user-typed field of a response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserField<'a> {
    pub kind: FieldKind,
    /// The key the field has in the body (`displayname`, `canonical_alias`, `m.tz`, …).
    pub key: Cow<'a, str>,
    /// The user it belongs to, when the body says (devices, keys).
    pub user_id: Option<Cow<'a, str>>,
    /// The device it belongs to, when the body says.
    pub device_id: Option<Cow<'a, str>>,
    /// The room it belongs to, when the body says (public rooms, hierarchy).
    pub room_id: Option<Cow<'a, str>>,
    /// The text: the string unescaped, or the JSON text of a non-string value.
    pub value: Cow<'a, str>,
    /// Where it sits, for removal.
    pub path: FieldPath,
}

/// One message of a to-device EDU, for one recipient device.
#[derive(Debug, Clone)]
pub struct ToDeviceMessage<'a> {
    /// Index of the EDU in the transaction's `edus`.
    pub edu: usize,
    /// `content.sender`, if a string.
    pub sender: Option<Cow<'a, str>>,
    /// `content.type` (the to-device event type, e.g. `m.room.encrypted`), if a string.
    pub event_type: Option<Cow<'a, str>>,
    /// `content.message_id`, if a string.
    pub message_id: Option<Cow<'a, str>>,
    /// Recipient user.
    pub user_id: String,
    /// Recipient device, or `*` (all devices of the user).
    pub device_id: String,
    /// The message content as received (opaque for encrypted types: its JSON text).
    pub content: &'a RawValue,
}

/// A body does not have the shape the guard knows, or a removal cannot be applied. No payload
/// in messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserDataError {
    #[error("not valid JSON")]
    NotJson,
    #[error("`{at}` must be {expected}")]
    Shape {
        at: &'static str,
        expected: &'static str,
    },
    #[error("no field at {0}")]
    NoSuchField(String),
    #[error("no to-device message for one of the refused devices")]
    NoSuchMessage,
    #[error("to-device EDU cannot be rebuilt as canonical JSON")]
    NotCanonical,
}

impl UserDataError {
    pub fn errcode(&self) -> &'static str {
        match self {
            Self::NotJson => "M_NOT_JSON",
            Self::Shape { .. } => "M_BAD_JSON",
            _ => "M_UNKNOWN",
        }
    }
}

fn members<'a>(
    at: &'static str,
    raw: &'a RawValue,
) -> Result<Vec<(String, &'a RawValue)>, UserDataError> {
    let mut out = Vec::new();
    for_each_member(raw, |k, v| {
        out.push((k.to_owned(), v));
        Ok(())
    })
    .map_err(|_| UserDataError::Shape {
        at,
        expected: "an object",
    })?;
    Ok(out)
}

fn elements<'a>(at: &'static str, raw: &'a RawValue) -> Result<Vec<&'a RawValue>, UserDataError> {
    array_elements(at, raw, usize::MAX)
        .map(|(v, _)| v)
        .map_err(|_| UserDataError::Shape {
            at,
            expected: "an array",
        })
}

fn is_null(raw: &RawValue) -> bool {
    raw.get() == "null"
}

/// The text of a field value: `None` for `null`, the unescaped string, or for any other value
/// every key, string and number in it, unescaped, one per line (as the receiver reads them:
/// `"\u0047EHEIM"` inside an object is `GEHEIM`).
fn text_of(raw: &RawValue) -> Option<Cow<'_, str>> {
    let t = raw.get();
    if t == "null" {
        None
    } else if t.starts_with('"') {
        // A string that does not unescape is not valid JSON; the body was validated, so
        // this only happens on a bug: judge the raw text then.
        Some(str_field("value", raw).unwrap_or(Cow::Borrowed(t)))
    } else {
        match serde_json::from_str::<serde_json::Value>(t) {
            Ok(v) => {
                let mut out = String::new();
                texts_of_value(&v, &mut out);
                Some(Cow::Owned(out))
            }
            // Validated bodies are JSON; on a bug judge the raw text.
            Err(_) => Some(Cow::Borrowed(t)),
        }
    }
}

fn texts_of_value(v: &serde_json::Value, out: &mut String) {
    let mut line = |s: &str| {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(s);
    };
    match v {
        serde_json::Value::String(s) => line(s),
        serde_json::Value::Number(n) => line(&n.to_string()),
        serde_json::Value::Bool(b) => line(if *b { "true" } else { "false" }),
        serde_json::Value::Null => {}
        serde_json::Value::Array(a) => a.iter().for_each(|x| texts_of_value(x, out)),
        serde_json::Value::Object(o) => {
            for (k, x) in o {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(k);
                texts_of_value(x, out);
            }
        }
    }
}

fn opt_str<'a>(raw: Option<&'a RawValue>) -> Option<Cow<'a, str>> {
    raw.filter(|r| r.get().starts_with('"'))
        .and_then(|r| str_field("id", r).ok())
}

fn root(body: &[u8]) -> Result<&RawValue, UserDataError> {
    serde_json::from_slice(body).map_err(|_| UserDataError::NotJson)
}

/// The user-typed fields of a (2xx, JSON) response of `endpoint`; `query_type` is the
/// percent-decoded `queryType` path parameter of `query_generic`. Endpoints without user text
/// give an empty list.
pub fn fields_in<'a>(
    endpoint: &Endpoint,
    query_type: Option<&str>,
    body: &'a [u8],
) -> Result<Vec<UserField<'a>>, UserDataError> {
    let mut out = Vec::new();
    match (endpoint.id, query_type) {
        ("query_profile", _) | ("query_generic", Some("profile")) => {
            profile(root(body)?, &mut out)?
        }
        ("user_devices", _) => devices(root(body)?, &mut out)?,
        ("user_keys_query", _) | ("query_generic", Some("client_keys")) => {
            keys_query(root(body)?, &mut out)?
        }
        ("public_rooms_get" | "public_rooms_post", _) => public_rooms(root(body)?, &mut out)?,
        ("hierarchy", _) => hierarchy(root(body)?, &mut out)?,
        _ => {}
    }
    Ok(out)
}

fn profile<'a>(root: &'a RawValue, out: &mut Vec<UserField<'a>>) -> Result<(), UserDataError> {
    for (k, v) in members("profile", root)? {
        let Some(value) = text_of(v) else { continue };
        let kind = match k.as_str() {
            "displayname" => FieldKind::Displayname,
            "avatar_url" => FieldKind::AvatarUrl,
            _ => FieldKind::ProfileField,
        };
        let path = FieldPath::default().key(&k);
        out.push(UserField {
            kind,
            key: Cow::Owned(k),
            user_id: None,
            device_id: None,
            room_id: None,
            value,
            path,
        });
    }
    Ok(())
}

fn device_name_field<'a>(
    value: &'a RawValue,
    user_id: Option<Cow<'a, str>>,
    device_id: Option<Cow<'a, str>>,
    path: FieldPath,
    out: &mut Vec<UserField<'a>>,
) {
    if let Some(value) = text_of(value) {
        out.push(UserField {
            kind: FieldKind::DeviceDisplayName,
            key: Cow::Borrowed("device_display_name"),
            user_id,
            device_id,
            room_id: None,
            value,
            path,
        });
    }
}

/// `unsigned.device_display_name` of a device key object.
fn device_keys_object<'a>(
    keys: &'a RawValue,
    user_id: Option<Cow<'a, str>>,
    device_id: Option<Cow<'a, str>>,
    path: FieldPath,
    out: &mut Vec<UserField<'a>>,
) -> Result<(), UserDataError> {
    for (k, v) in members("device keys", keys)? {
        if k == "unsigned" && !is_null(v) {
            for (uk, uv) in members("unsigned", v)? {
                if uk == "device_display_name" {
                    device_name_field(
                        uv,
                        user_id.clone(),
                        device_id.clone(),
                        path.key("unsigned").key(&uk),
                        out,
                    );
                }
            }
        }
    }
    Ok(())
}

fn devices<'a>(root: &'a RawValue, out: &mut Vec<UserField<'a>>) -> Result<(), UserDataError> {
    let top = members("user devices", root)?;
    let user_id = opt_str(top.iter().find(|(k, _)| k == "user_id").map(|(_, v)| *v));
    let Some((_, list)) = top.iter().find(|(k, _)| k == "devices") else {
        return Ok(());
    };
    for (i, dev) in elements("devices", list)?.into_iter().enumerate() {
        let dm = members("devices[]", dev)?;
        let device_id = opt_str(dm.iter().find(|(k, _)| k == "device_id").map(|(_, v)| *v));
        let at = FieldPath(vec![PathSeg::Key("devices".into()), PathSeg::Index(i)]);
        for (k, v) in dm {
            match k.as_str() {
                "device_display_name" => {
                    device_name_field(v, user_id.clone(), device_id.clone(), at.key(&k), out)
                }
                "keys" if !is_null(v) => {
                    device_keys_object(v, user_id.clone(), device_id.clone(), at.key(&k), out)?
                }
                _ => {}
            }
        }
    }
    Ok(())
}

fn keys_query<'a>(root: &'a RawValue, out: &mut Vec<UserField<'a>>) -> Result<(), UserDataError> {
    for (k, v) in members("keys query", root)? {
        if k != "device_keys" {
            continue;
        }
        for (user, devs) in members("device_keys", v)? {
            for (device, keys) in members("device_keys.*", devs)? {
                let path = FieldPath(vec![
                    PathSeg::Key("device_keys".into()),
                    PathSeg::Key(user.clone()),
                    PathSeg::Key(device.clone()),
                ]);
                if !is_null(keys) {
                    device_keys_object(
                        keys,
                        Some(Cow::Owned(user.clone())),
                        Some(Cow::Owned(device)),
                        path,
                        out,
                    )?;
                }
            }
        }
    }
    Ok(())
}

/// `name`, `topic`, `canonical_alias`, `aliases`, `avatar_url` of a room summary (public rooms
/// chunk, hierarchy room/children).
fn room_summary<'a>(
    room: &'a RawValue,
    at: FieldPath,
    out: &mut Vec<UserField<'a>>,
) -> Result<(), UserDataError> {
    let ms = members("room", room)?;
    let room_id = opt_str(ms.iter().find(|(k, _)| k == "room_id").map(|(_, v)| *v));
    for (k, v) in ms {
        let kind = match k.as_str() {
            "name" => FieldKind::RoomName,
            "topic" => FieldKind::RoomTopic,
            "canonical_alias" | "aliases" => FieldKind::RoomAlias,
            "avatar_url" => FieldKind::AvatarUrl,
            // The rest (room_type, join_rule, counts, …) is response text
            // (`federation::response_text`).
            _ => continue,
        };
        let Some(value) = text_of(v) else { continue };
        let path = at.key(&k);
        out.push(UserField {
            kind,
            key: Cow::Owned(k),
            user_id: None,
            device_id: None,
            room_id: room_id.clone(),
            value,
            path,
        });
    }
    Ok(())
}

fn public_rooms<'a>(root: &'a RawValue, out: &mut Vec<UserField<'a>>) -> Result<(), UserDataError> {
    for (k, v) in members("public rooms", root)? {
        if k == "chunk" {
            for (i, room) in elements("chunk", v)?.into_iter().enumerate() {
                room_summary(
                    room,
                    FieldPath(vec![PathSeg::Key("chunk".into()), PathSeg::Index(i)]),
                    out,
                )?;
            }
        }
    }
    Ok(())
}

fn hierarchy<'a>(root: &'a RawValue, out: &mut Vec<UserField<'a>>) -> Result<(), UserDataError> {
    for (k, v) in members("hierarchy", root)? {
        match k.as_str() {
            "room" => room_summary(v, FieldPath::default().key("room"), out)?,
            "children" => {
                for (i, room) in elements("children", v)?.into_iter().enumerate() {
                    room_summary(
                        room,
                        FieldPath(vec![PathSeg::Key("children".into()), PathSeg::Index(i)]),
                        out,
                    )?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Removes the fields at `paths` (each path's last step is a key) and re-serialises the body.
/// A path that leads nowhere is an error (the caller refuses: nothing unjudged is released).
pub fn remove_fields(body: &[u8], paths: &[&FieldPath]) -> Result<Vec<u8>, UserDataError> {
    let mut root: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| UserDataError::NotJson)?;
    for path in paths {
        let missing = || UserDataError::NoSuchField(path.to_string());
        let (last, parents) = path.0.split_last().ok_or_else(missing)?;
        let PathSeg::Key(last) = last else {
            return Err(missing());
        };
        let mut at = &mut root;
        for seg in parents {
            at = match seg {
                PathSeg::Key(k) => at.get_mut(k.as_str()),
                PathSeg::Index(i) => at.get_mut(*i),
            }
            .ok_or_else(missing)?;
        }
        at.as_object_mut()
            .and_then(|o| o.remove(last))
            .ok_or_else(missing)?;
    }
    serde_json::to_vec(&root).map_err(|_| UserDataError::NotJson)
}

// ---------------------------------------------------------------------------------------------
// To-device.

/// The per-device messages of an `m.direct_to_device` EDU (index `edu` in the transaction);
/// empty for any other EDU type and for one without `messages`.
pub fn to_device_in<'a>(
    edu: usize,
    view: &EduView<'a>,
) -> Result<Vec<ToDeviceMessage<'a>>, UserDataError> {
    if view.edu_type != TO_DEVICE_EDU {
        return Ok(Vec::new());
    }
    let content = members("content", view.content)?;
    let field = |name: &str| content.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
    let Some(messages) = field("messages") else {
        return Ok(Vec::new());
    };
    let (sender, event_type, message_id) = (
        opt_str(field("sender")),
        opt_str(field("type")),
        opt_str(field("message_id")),
    );
    let mut out = Vec::new();
    for (user_id, by_device) in members("messages", messages)? {
        for (device_id, content) in members("messages.*", by_device)? {
            out.push(ToDeviceMessage {
                edu,
                sender: sender.clone(),
                event_type: event_type.clone(),
                message_id: message_id.clone(),
                user_id: user_id.clone(),
                device_id,
                content,
            });
        }
    }
    Ok(out)
}

/// The EDU `raw` without the messages for the given `(user, device)` pairs, as canonical
/// JSON; `None` if no message is left (drop the EDU). Every pair must exist.
pub fn without_messages(
    raw: &RawValue,
    drop: &[(&str, &str)],
) -> Result<Option<Box<RawValue>>, UserDataError> {
    let mut edu = parse_canonical(raw).map_err(|_| UserDataError::NotCanonical)?;
    let messages = match &mut edu {
        CanonicalJsonValue::Object(o) => match o.get_mut("content") {
            Some(CanonicalJsonValue::Object(c)) => match c.get_mut("messages") {
                Some(CanonicalJsonValue::Object(m)) => m,
                _ => {
                    return Err(UserDataError::Shape {
                        at: "messages",
                        expected: "an object",
                    })
                }
            },
            _ => {
                return Err(UserDataError::Shape {
                    at: "content",
                    expected: "an object",
                })
            }
        },
        _ => {
            return Err(UserDataError::Shape {
                at: "edu",
                expected: "an object",
            })
        }
    };
    for (user, device) in drop {
        let Some(CanonicalJsonValue::Object(devices)) = messages.get_mut(*user) else {
            return Err(UserDataError::NoSuchMessage);
        };
        devices
            .remove(*device)
            .ok_or(UserDataError::NoSuchMessage)?;
        if devices.is_empty() {
            messages.remove(*user);
        }
    }
    if messages.is_empty() {
        return Ok(None);
    }
    let bytes = to_canonical_bytes(&edu);
    let text = String::from_utf8(bytes).map_err(|_| UserDataError::NotCanonical)?;
    RawValue::from_string(text)
        .map(Some)
        .map_err(|_| UserDataError::NotCanonical)
}

#[cfg(test)]
mod tests;
