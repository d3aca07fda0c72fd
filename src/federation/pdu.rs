//! Typed views over raw events (PDUs, stripped state, templates) and EDUs, and the table-driven
//! locator of events inside any federation body.
//!
//! # Design notes
//!
//! * **Keep the bytes, inspect a view.** A view borrows from the raw JSON: strings are
//!   `Cow<str>` (borrowed unless the JSON escaped them — `"m.room.me\u0073sage"` is unescaped
//!   to `m.room.message`, so a type filter cannot be dodged by escaping), `content` and
//!   `unsigned` stay `&RawValue`. Nothing is re-serialized; forwarding uses the original bytes.
//! * Views check the fields they expose (presence and JSON type) and refuse duplicates of them,
//!   so they are safe even on bodies that skipped [`crate::federation::json::validate`]. They
//!   do not check identifier grammar or room-version rules (that is ruma's job, per room
//!   version).
//! * Errors are typed and never carry payload: a field name and the expected type at most.
//! * [`pdus_in`] walks the [`EventSite`]s the catalog declares for an endpoint and direction,
//!   so the proxy finds every event in send_join state, backfill, invites, … from one table.
use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::catalog::{Direction, Endpoint, EventKind, EventSite, Step};
use super::json::{CowStrVisitor, KeySeed};

/// A malformed event, EDU or body field. No payload in messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// Not valid JSON at all.
    #[error("not valid JSON")]
    NotJson,
    /// The value is not a JSON object.
    #[error("not a JSON object")]
    NotObject,
    /// A required field is absent.
    #[error("missing field `{0}`")]
    Missing(&'static str),
    /// A field has the wrong JSON type.
    #[error("field `{field}` must be {expected}")]
    WrongType {
        /// Field name.
        field: &'static str,
        /// Expected JSON type.
        expected: &'static str,
    },
    /// A field appears twice.
    #[error("duplicate field `{0}`")]
    Duplicate(&'static str),
}

impl EventError {
    /// The Matrix error code.
    pub fn errcode(&self) -> &'static str {
        match self {
            Self::NotJson => "M_NOT_JSON",
            _ => "M_BAD_JSON",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Field helpers (shared with txn.rs).

/// Calls `f(key, value)` for each member of the JSON object `raw`, in document order. Keys are
/// unescaped. Errors from `f` are returned as they are.
pub(crate) fn for_each_member<'a, F>(raw: &'a RawValue, f: F) -> Result<(), EventError>
where
    F: FnMut(&str, &'a RawValue) -> Result<(), EventError>,
{
    let text = raw.get();
    if !text.trim_start().starts_with('{') {
        return Err(EventError::NotObject);
    }
    let mut failure = None;
    let mut de = serde_json::Deserializer::from_str(text);
    let res = de.deserialize_map(MemberVisitor {
        f,
        failure: &mut failure,
    });
    match (res, failure) {
        (Ok(()), _) => Ok(()),
        (Err(_), Some(e)) => Err(e),
        (Err(_), None) => Err(EventError::NotJson),
    }
}

struct MemberVisitor<'f, F> {
    f: F,
    failure: &'f mut Option<EventError>,
}

impl<'de, F> Visitor<'de> for MemberVisitor<'_, F>
where
    F: FnMut(&str, &'de RawValue) -> Result<(), EventError>,
{
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let value: &'de RawValue = map.next_value()?;
            if let Err(e) = (self.f)(&key, value) {
                *self.failure = Some(e);
                return Err(de::Error::custom("rejected"));
            }
        }
        Ok(())
    }
}

/// Stores `v` in `slot`, refusing a second occurrence.
pub(crate) fn set_once<'a>(
    slot: &mut Option<&'a RawValue>,
    field: &'static str,
    v: &'a RawValue,
) -> Result<(), EventError> {
    if slot.replace(v).is_some() {
        return Err(EventError::Duplicate(field));
    }
    Ok(())
}

/// A JSON string field, unescaped (borrowed when it had no escapes).
pub(crate) fn str_field<'a>(
    field: &'static str,
    v: &'a RawValue,
) -> Result<Cow<'a, str>, EventError> {
    let wrong = EventError::WrongType {
        field,
        expected: "a string",
    };
    if !v.get().starts_with('"') {
        return Err(wrong);
    }
    serde_json::Deserializer::from_str(v.get())
        .deserialize_str(CowStrVisitor)
        .map_err(|_| wrong)
}

/// A JSON integer field (no fraction, no exponent), as i64.
pub(crate) fn int_field(field: &'static str, v: &RawValue) -> Result<i64, EventError> {
    serde_json::from_str::<i64>(v.get()).map_err(|_| EventError::WrongType {
        field,
        expected: "an integer",
    })
}

/// An object field, kept raw.
pub(crate) fn object_field<'a>(
    field: &'static str,
    v: &'a RawValue,
) -> Result<&'a RawValue, EventError> {
    if v.get().starts_with('{') {
        Ok(v)
    } else {
        Err(EventError::WrongType {
            field,
            expected: "an object",
        })
    }
}

pub(crate) fn required<T>(field: &'static str, v: Option<T>) -> Result<T, EventError> {
    v.ok_or(EventError::Missing(field))
}

/// Elements of a JSON array, each kept raw; counts all elements but keeps at most `keep`.
/// Returns the kept elements and the total count.
pub(crate) fn array_elements<'a>(
    field: &'static str,
    v: &'a RawValue,
    keep: usize,
) -> Result<(Vec<&'a RawValue>, usize), EventError> {
    let wrong = EventError::WrongType {
        field,
        expected: "an array",
    };
    let not_array = Cell::new(false);
    let mut de = serde_json::Deserializer::from_str(v.get());
    BoundedArray {
        keep,
        not_array: &not_array,
    }
    .deserialize(&mut de)
    .map_err(|_| wrong)
}

/// Seed reading a JSON array as raw elements: keeps at most `keep`, counts all (so an
/// oversized array costs no memory). A value that is not an array sets `not_array` and fails.
pub(crate) struct BoundedArray<'c> {
    pub(crate) keep: usize,
    pub(crate) not_array: &'c Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for BoundedArray<'_> {
    type Value = (Vec<&'de RawValue>, usize);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl BoundedArray<'_> {
    fn wrong<E: de::Error, T>(self) -> Result<T, E> {
        self.not_array.set(true);
        Err(E::custom("not an array"))
    }
}

impl<'de> Visitor<'de> for BoundedArray<'_> {
    type Value = (Vec<&'de RawValue>, usize);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut kept = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.keep).min(64));
        let mut count = 0usize;
        while count < self.keep {
            match seq.next_element::<&'de RawValue>()? {
                Some(v) => {
                    kept.push(v);
                    count += 1;
                }
                None => return Ok((kept, count)),
            }
        }
        // Over the limit: count the rest without keeping it.
        while seq.next_element::<IgnoredAny>()?.is_some() {
            count += 1;
        }
        Ok((kept, count))
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        self.wrong()
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        self.wrong()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        self.wrong()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        self.wrong()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        self.wrong()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        self.wrong()
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.wrong()
    }
}

// ---------------------------------------------------------------------------------------------
// Views.

#[derive(Default)]
struct Fields<'a> {
    room_id: Option<&'a RawValue>,
    event_type: Option<&'a RawValue>,
    sender: Option<&'a RawValue>,
    state_key: Option<&'a RawValue>,
    event_id: Option<&'a RawValue>,
    origin_server_ts: Option<&'a RawValue>,
    content: Option<&'a RawValue>,
    redacts: Option<&'a RawValue>,
    unsigned: Option<&'a RawValue>,
}

impl<'a> Fields<'a> {
    fn scan(raw: &'a RawValue) -> Result<Self, EventError> {
        let mut f = Fields::default();
        for_each_member(raw, |k, v| match k {
            "room_id" => set_once(&mut f.room_id, "room_id", v),
            "type" => set_once(&mut f.event_type, "type", v),
            "sender" => set_once(&mut f.sender, "sender", v),
            "state_key" => set_once(&mut f.state_key, "state_key", v),
            "event_id" => set_once(&mut f.event_id, "event_id", v),
            "origin_server_ts" => set_once(&mut f.origin_server_ts, "origin_server_ts", v),
            "content" => set_once(&mut f.content, "content", v),
            "redacts" => set_once(&mut f.redacts, "redacts", v),
            "unsigned" => set_once(&mut f.unsigned, "unsigned", v),
            _ => Ok(()),
        })?;
        Ok(f)
    }
}

fn opt_str<'a>(
    field: &'static str,
    v: Option<&'a RawValue>,
) -> Result<Option<Cow<'a, str>>, EventError> {
    v.map(|v| str_field(field, v)).transpose()
}

/// Typed view of a full PDU (any room version).
#[derive(Debug, Clone)]
pub struct PduView<'a> {
    /// The PDU as received.
    pub raw: &'a RawValue,
    /// `room_id`. Absent only on `m.room.create` in room version 12+, where the room id is
    /// derived from the create event's reference hash.
    pub room_id: Option<Cow<'a, str>>,
    /// `type`.
    pub event_type: Cow<'a, str>,
    /// `sender`.
    pub sender: Cow<'a, str>,
    /// `state_key`, for state events.
    pub state_key: Option<Cow<'a, str>>,
    /// `event_id`: present in room versions 1 and 2 only (later versions derive it from the
    /// reference hash).
    pub event_id: Option<Cow<'a, str>>,
    /// `origin_server_ts`.
    pub origin_server_ts: i64,
    /// `content`, raw.
    pub content: &'a RawValue,
    /// Top-level `redacts` (room versions 1–10; v11+ keeps it in `content`).
    pub redacts: Option<Cow<'a, str>>,
    /// `unsigned`, raw, if present (receivers drop or rewrite it; not covered by signatures).
    pub unsigned: Option<&'a RawValue>,
}

impl<'a> PduView<'a> {
    /// Parses the view; requires `type`, `sender` (strings), `origin_server_ts` (integer),
    /// `content` (object) and `room_id` (string) — except on `m.room.create`, which has no
    /// `room_id` from room version 12 on.
    pub fn parse(raw: &'a RawValue) -> Result<Self, EventError> {
        let f = Fields::scan(raw)?;
        let event_type = str_field("type", required("type", f.event_type)?)?;
        let room_id = match f.room_id {
            Some(v) => Some(str_field("room_id", v)?),
            None if event_type == "m.room.create" => None,
            None => return Err(EventError::Missing("room_id")),
        };
        Ok(Self {
            raw,
            room_id,
            event_type,
            sender: str_field("sender", required("sender", f.sender)?)?,
            state_key: opt_str("state_key", f.state_key)?,
            event_id: opt_str("event_id", f.event_id)?,
            origin_server_ts: int_field(
                "origin_server_ts",
                required("origin_server_ts", f.origin_server_ts)?,
            )?,
            content: object_field("content", required("content", f.content)?)?,
            redacts: opt_str("redacts", f.redacts)?,
            unsigned: f
                .unsigned
                .map(|u| object_field("unsigned", u))
                .transpose()?,
        })
    }

    /// Size of the PDU's raw JSON in bytes (the 65 536-byte limit applies to it).
    pub fn byte_len(&self) -> usize {
        self.raw.get().len()
    }

    /// True for state events (a `state_key` is present, possibly empty).
    pub fn is_state(&self) -> bool {
        self.state_key.is_some()
    }

    /// The server part of `sender` (after the first `:`), if any.
    pub fn sender_server(&self) -> Option<&str> {
        self.sender.split_once(':').map(|(_, s)| s)
    }
}

/// Lenient view of an event that may not be a full PDU: stripped state, `make_*` templates,
/// partial events. Requires `type`, `sender` and `content`; the rest is optional.
#[derive(Debug, Clone)]
pub struct EventView<'a> {
    /// The event as received.
    pub raw: &'a RawValue,
    /// `type`.
    pub event_type: Cow<'a, str>,
    /// `sender`.
    pub sender: Cow<'a, str>,
    /// `state_key`, if present.
    pub state_key: Option<Cow<'a, str>>,
    /// `content`, raw.
    pub content: &'a RawValue,
    /// `room_id`, if present.
    pub room_id: Option<Cow<'a, str>>,
    /// `event_id`, if present.
    pub event_id: Option<Cow<'a, str>>,
    /// `origin_server_ts`, if present.
    pub origin_server_ts: Option<i64>,
}

impl<'a> EventView<'a> {
    /// Parses the lenient view.
    pub fn parse(raw: &'a RawValue) -> Result<Self, EventError> {
        let f = Fields::scan(raw)?;
        Ok(Self {
            raw,
            event_type: str_field("type", required("type", f.event_type)?)?,
            sender: str_field("sender", required("sender", f.sender)?)?,
            state_key: opt_str("state_key", f.state_key)?,
            content: object_field("content", required("content", f.content)?)?,
            room_id: opt_str("room_id", f.room_id)?,
            event_id: opt_str("event_id", f.event_id)?,
            origin_server_ts: f
                .origin_server_ts
                .map(|v| int_field("origin_server_ts", v))
                .transpose()?,
        })
    }
}

/// Typed view of an EDU (`{"edu_type": …, "content": {…}}`).
#[derive(Debug, Clone)]
pub struct EduView<'a> {
    /// The EDU as received.
    pub raw: &'a RawValue,
    /// `edu_type` (`m.typing`, `m.receipt`, `m.presence`, `m.device_list_update`,
    /// `m.signing_key_update`, `m.direct_to_device`, …).
    pub edu_type: Cow<'a, str>,
    /// `content`, raw.
    pub content: &'a RawValue,
}

impl<'a> EduView<'a> {
    /// Parses the view; requires `edu_type` (string) and `content` (object).
    pub fn parse(raw: &'a RawValue) -> Result<Self, EventError> {
        let (mut edu_type, mut content) = (None, None);
        for_each_member(raw, |k, v| match k {
            "edu_type" => set_once(&mut edu_type, "edu_type", v),
            "content" => set_once(&mut content, "content", v),
            _ => Ok(()),
        })?;
        Ok(Self {
            raw,
            edu_type: str_field("edu_type", required("edu_type", edu_type)?)?,
            content: object_field("content", required("content", content)?)?,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Locating events in bodies.

/// One event found in a body.
#[derive(Debug, Clone, Copy)]
pub struct FoundEvent<'a> {
    /// The catalog site it was found at (kind, path).
    pub site: &'static EventSite,
    /// Position among the events found at this site (document order).
    pub ordinal: usize,
    /// The event's raw JSON.
    pub raw: &'a RawValue,
}

impl<'a> FoundEvent<'a> {
    /// What kind of event this is.
    pub fn kind(&self) -> EventKind {
        self.site.kind
    }

    /// Strict PDU view (only meaningful for [`EventKind::Pdu`] sites).
    pub fn pdu(&self) -> Result<PduView<'a>, EventError> {
        PduView::parse(self.raw)
    }

    /// Lenient view, valid for every kind.
    pub fn event(&self) -> Result<EventView<'a>, EventError> {
        EventView::parse(self.raw)
    }
}

/// A body does not have the shape its catalog entry declares.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocateError {
    /// Not JSON.
    #[error("body is not valid JSON")]
    NotJson,
    /// A required site is absent.
    #[error("missing `{}`", .site.display_path())]
    Missing {
        /// The site.
        site: &'static EventSite,
    },
    /// Something on the way to a site has the wrong type.
    #[error("`{}`: expected {expected}", .site.display_path())]
    WrongType {
        /// The site.
        site: &'static EventSite,
        /// Expected JSON type.
        expected: &'static str,
    },
    /// A member on the way to a site appears twice.
    #[error("`{}`: duplicate member", .site.display_path())]
    Duplicate {
        /// The site.
        site: &'static EventSite,
    },
}

impl LocateError {
    /// The Matrix error code.
    pub fn errcode(&self) -> &'static str {
        match self {
            Self::NotJson => "M_NOT_JSON",
            _ => "M_BAD_JSON",
        }
    }
}

/// Every event in `body` (the JSON bytes of `endpoint`'s request or response), in site order
/// then document order. Optional sites that are absent yield nothing; required ones are an
/// error. Takes the sites from the catalog ([`Endpoint::events`]).
pub fn pdus_in<'a>(
    endpoint: &'static Endpoint,
    direction: Direction,
    body: &'a [u8],
) -> Result<Vec<FoundEvent<'a>>, LocateError> {
    let sites = endpoint.events(direction);
    if sites.is_empty() {
        return Ok(Vec::new());
    }
    let raw: &'a RawValue = serde_json::from_slice(body).map_err(|_| LocateError::NotJson)?;
    pdus_in_raw(endpoint, direction, raw)
}

/// As [`pdus_in`], on an already split-out raw body.
pub fn pdus_in_raw<'a>(
    endpoint: &'static Endpoint,
    direction: Direction,
    body: &'a RawValue,
) -> Result<Vec<FoundEvent<'a>>, LocateError> {
    let mut out = Vec::new();
    for site in endpoint.events(direction) {
        let mut ordinal = 0;
        walk(site, site.path, body, &mut ordinal, &mut out)?;
    }
    Ok(out)
}

fn walk<'a>(
    site: &'static EventSite,
    steps: &'static [Step],
    raw: &'a RawValue,
    ordinal: &mut usize,
    out: &mut Vec<FoundEvent<'a>>,
) -> Result<(), LocateError> {
    let Some((step, rest)) = steps.split_first() else {
        out.push(FoundEvent {
            site,
            ordinal: *ordinal,
            raw,
        });
        *ordinal += 1;
        return Ok(());
    };
    match step {
        Step::Key(key) => {
            let mut found = None;
            for_each_member(raw, |k, v| {
                if k == *key && found.replace(v).is_some() {
                    return Err(EventError::Duplicate("member"));
                }
                Ok(())
            })
            .map_err(|e| match e {
                EventError::Duplicate(_) => LocateError::Duplicate { site },
                _ => LocateError::WrongType {
                    site,
                    expected: "an object",
                },
            })?;
            match found {
                Some(v) => walk(site, rest, v, ordinal, out),
                None if site.required => Err(LocateError::Missing { site }),
                None => Ok(()),
            }
        }
        Step::Each => {
            let (items, _) =
                array_elements("array", raw, usize::MAX).map_err(|_| LocateError::WrongType {
                    site,
                    expected: "an array",
                })?;
            for item in items {
                walk(site, rest, item, ordinal, out)?;
            }
            Ok(())
        }
        Step::Index(i) => {
            let (items, _) =
                array_elements("array", raw, i + 1).map_err(|_| LocateError::WrongType {
                    site,
                    expected: "an array",
                })?;
            match items.get(*i) {
                Some(v) => walk(site, rest, v, ordinal, out),
                None if site.required => Err(LocateError::Missing { site }),
                None => Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::catalog::{by_id, lookup};
    use http::Method;

    fn raw(s: &str) -> &RawValue {
        serde_json::from_str(s).unwrap()
    }

    const PDU: &str = r#"{"auth_events":["$a"],"content":{"body":"Grüße, Jürgen!","msgtype":"m.text"},"depth":12,"hashes":{"sha256":"x"},"origin_server_ts":1712345678901,"prev_events":["$p"],"room_id":"!r:example.org","sender":"@alice:example.org","signatures":{},"type":"m.room.message","unsigned":{"age":4}}"#;

    #[test]
    fn pdu_view_borrows_and_reads_fields() {
        let r = raw(PDU);
        let v = PduView::parse(r).unwrap();
        assert_eq!(v.room_id.as_deref(), Some("!r:example.org"));
        assert!(matches!(v.room_id, Some(Cow::Borrowed(_))));
        assert_eq!(v.event_type, "m.room.message");
        assert_eq!(v.sender, "@alice:example.org");
        assert_eq!(v.sender_server(), Some("example.org"));
        assert_eq!(v.state_key, None);
        assert!(!v.is_state());
        assert_eq!(v.event_id, None);
        assert_eq!(v.origin_server_ts, 1712345678901);
        assert_eq!(
            v.content.get(),
            r#"{"body":"Grüße, Jürgen!","msgtype":"m.text"}"#
        );
        assert_eq!(v.unsigned.unwrap().get(), r#"{"age":4}"#);
        assert_eq!(v.byte_len(), PDU.len());
    }

    #[test]
    fn escaped_fields_are_unescaped() {
        let s = PDU.replace(
            r#""type":"m.room.message""#,
            r#""t\u0079pe":"m.room.me\u0073sage""#,
        );
        let v = PduView::parse(raw(&s)).unwrap();
        assert_eq!(v.event_type, "m.room.message");
        // And an escaped duplicate of `type` is caught.
        let dup = PDU.replace(
            r#""type":"m.room.message""#,
            r#""type":"m.room.message","t\u0079pe":"x""#,
        );
        assert_eq!(
            PduView::parse(raw(&dup)).unwrap_err(),
            (EventError::Duplicate("type"))
        );
    }

    #[test]
    fn pdu_view_errors_are_typed() {
        let without = |f: &str| {
            let mut v: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(PDU).unwrap();
            v.remove(f);
            serde_json::to_string(&v).unwrap()
        };
        for f in ["room_id", "type", "sender", "origin_server_ts", "content"] {
            let s = without(f);
            let e = PduView::parse(raw(&s)).unwrap_err();
            assert_eq!(
                e,
                EventError::Missing(match f {
                    "room_id" => "room_id",
                    "type" => "type",
                    "sender" => "sender",
                    "origin_server_ts" => "origin_server_ts",
                    _ => "content",
                })
            );
            assert_eq!(e.errcode(), "M_BAD_JSON");
        }
        let bad = PDU.replace("1712345678901", "1.5");
        assert_eq!(
            PduView::parse(raw(&bad)).unwrap_err(),
            (EventError::WrongType {
                field: "origin_server_ts",
                expected: "an integer"
            })
        );
        let bad = PDU.replace(r#""!r:example.org""#, "7");
        assert_eq!(
            PduView::parse(raw(&bad)).unwrap_err(),
            (EventError::WrongType {
                field: "room_id",
                expected: "a string"
            })
        );
        let bad = PDU.replace(r#"{"body":"Grüße, Jürgen!","msgtype":"m.text"}"#, "[]");
        assert_eq!(
            PduView::parse(raw(&bad)).unwrap_err(),
            (EventError::WrongType {
                field: "content",
                expected: "an object"
            })
        );
        let bad = PDU.replace(
            r#""type":"m.room.message""#,
            r#""type":"m.room.message","state_key":null"#,
        );
        assert_eq!(
            PduView::parse(raw(&bad)).unwrap_err(),
            (EventError::WrongType {
                field: "state_key",
                expected: "a string"
            })
        );
        assert_eq!(
            PduView::parse(raw("[1]")).unwrap_err(),
            (EventError::NotObject)
        );
        assert_eq!(
            PduView::parse(raw("\"x\"")).unwrap_err(),
            (EventError::NotObject)
        );
    }

    #[test]
    fn state_event_and_v1_event_id() {
        let s = r#"{"type":"m.room.member","state_key":"","sender":"@a:b","room_id":"!r:b","origin_server_ts":1,"content":{"membership":"join"},"event_id":"$e:b"}"#;
        let v = PduView::parse(raw(s)).unwrap();
        assert!(v.is_state());
        assert_eq!(v.state_key.as_deref(), Some(""));
        assert_eq!(v.event_id.as_deref(), Some("$e:b"));
    }

    #[test]
    fn edu_view() {
        let e = EduView::parse(raw(r#"{"edu_type":"m.typing","content":{"room_id":"!r:b","user_id":"@a:b","typing":true},"origin":"b"}"#)).unwrap();
        assert_eq!(e.edu_type, "m.typing");
        assert!(e.content.get().starts_with('{'));
        assert_eq!(
            EduView::parse(raw(r#"{"content":{}}"#)).unwrap_err(),
            (EventError::Missing("edu_type"))
        );
        assert_eq!(
            EduView::parse(raw(r#"{"edu_type":"m.typing","content":"x"}"#)).unwrap_err(),
            (EventError::WrongType {
                field: "content",
                expected: "an object"
            })
        );
    }

    #[test]
    fn event_view_is_lenient() {
        let stripped = r#"{"type":"m.room.name","state_key":"","sender":"@a:b","content":{"name":"Lagezentrum"}}"#;
        let v = EventView::parse(raw(stripped)).unwrap();
        assert_eq!(v.event_type, "m.room.name");
        assert_eq!(v.room_id, None);
        assert!(PduView::parse(raw(stripped)).is_err());
    }

    fn found<'a>(
        id: &str,
        dir: Direction,
        body: &'a str,
    ) -> Result<Vec<FoundEvent<'a>>, LocateError> {
        pdus_in(by_id(id).unwrap(), dir, body.as_bytes())
    }

    #[test]
    fn pdus_in_send_join_v2_response() {
        let body = format!(
            r#"{{"origin":"b","members_omitted":false,"state":[{PDU},{PDU}],"auth_chain":[{PDU}],"event":{PDU},"servers_in_room":["b"]}}"#
        );
        let f = found("send_join_v2", Direction::Response, &body).unwrap();
        let paths: Vec<_> = f
            .iter()
            .map(|f| (f.site.display_path(), f.ordinal))
            .collect();
        assert_eq!(
            paths,
            [
                ("state[]".into(), 0),
                ("state[]".into(), 1),
                ("auth_chain[]".into(), 0),
                ("event".into(), 0)
            ]
        );
        for e in &f {
            assert_eq!(e.pdu().unwrap().event_type, "m.room.message");
        }
        // `event` is optional.
        let body = format!(r#"{{"state":[],"auth_chain":[{PDU}]}}"#);
        assert_eq!(
            found("send_join_v2", Direction::Response, &body)
                .unwrap()
                .len(),
            1
        );
        // `state` is required.
        let e = found("send_join_v2", Direction::Response, r#"{"auth_chain":[]}"#).unwrap_err();
        assert!(matches!(e, LocateError::Missing { site } if site.display_path() == "state[]"));
        let e = found(
            "send_join_v2",
            Direction::Response,
            r#"{"state":{},"auth_chain":[]}"#,
        )
        .unwrap_err();
        assert!(matches!(
            e,
            LocateError::WrongType {
                expected: "an array",
                ..
            }
        ));
        assert_eq!(e.errcode(), "M_BAD_JSON");
    }

    #[test]
    fn pdus_in_legacy_pairs_and_invites() {
        let body = format!(r#"[200,{{"state":[{PDU}],"auth_chain":[],"origin":"b"}}]"#);
        let f = found("send_join_v1", Direction::Response, &body).unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].site.display_path(), "[1].state[]");
        let body = format!(r#"[200,{{"event":{PDU}}}]"#);
        assert_eq!(
            found("invite_v1", Direction::Response, &body)
                .unwrap()
                .len(),
            1
        );
        assert!(matches!(
            found("invite_v1", Direction::Response, "[200]"),
            Err(LocateError::Missing { .. })
        ));
        let stripped =
            r#"{"type":"m.room.name","state_key":"","sender":"@a:b","content":{"name":"n"}}"#;
        let body =
            format!(r#"{{"room_version":"12","event":{PDU},"invite_room_state":[{stripped}]}}"#);
        let f = found("invite_v2", Direction::Request, &body).unwrap();
        assert_eq!(
            f.iter().map(|f| f.kind()).collect::<Vec<_>>(),
            [EventKind::Pdu, EventKind::StrippedState]
        );
        assert_eq!(f[1].event().unwrap().event_type, "m.room.name");
        // v1 invite: the body is the PDU, room state in its unsigned.
        let body = PDU.replace(
            r#""unsigned":{"age":4}"#,
            &format!(r#""unsigned":{{"invite_room_state":[{stripped},{stripped}]}}"#),
        );
        let f = found("invite_v1", Direction::Request, &body).unwrap();
        assert_eq!(f.len(), 3);
        assert_eq!(f[0].site.display_path(), "(body)");
    }

    #[test]
    fn pdus_in_other_endpoints() {
        let body = format!(r#"{{"origin":"b","origin_server_ts":1,"pdus":[{PDU},{PDU},{PDU}]}}"#);
        assert_eq!(
            found("backfill", Direction::Response, &body).unwrap().len(),
            3
        );
        assert_eq!(
            found("get_event", Direction::Response, &body)
                .unwrap()
                .len(),
            3
        );
        let body = format!(r#"{{"events":[{PDU}]}}"#);
        assert_eq!(
            found("get_missing_events", Direction::Response, &body)
                .unwrap()
                .len(),
            1
        );
        let body = r#"{"room_version":"12","event":{"type":"m.room.member","sender":"@a:b","state_key":"@a:b","content":{"membership":"join"},"origin":"b","origin_server_ts":1}}"#;
        let f = found("make_join", Direction::Response, body).unwrap();
        assert_eq!(f[0].kind(), EventKind::Template);
        let body = r#"{"room":{"room_id":"!s:b","children_state":[{"type":"m.space.child","state_key":"!c:b","sender":"@a:b","content":{}}]},"children":[{"room_id":"!c:b","children_state":[]},{"room_id":"!d:b"}],"inaccessible_children":[]}"#;
        assert_eq!(
            found("hierarchy", Direction::Response, body).unwrap().len(),
            1
        );
        // Endpoints without sites yield nothing and do not even parse.
        assert!(found("version", Direction::Response, "not json")
            .unwrap()
            .is_empty());
        assert_eq!(
            found("backfill", Direction::Response, "{").unwrap_err(),
            LocateError::NotJson
        );
        // Duplicate members on the way are refused.
        let body = format!(r#"{{"pdus":[],"pdus":[{PDU}]}}"#);
        assert!(matches!(
            found("backfill", Direction::Response, &body),
            Err(LocateError::Duplicate { .. })
        ));
        // Every endpoint's sites work through lookup too.
        let m = lookup(&Method::PUT, "/_matrix/federation/v1/send/t1").unwrap();
        let body = format!(r#"{{"origin":"b","origin_server_ts":1,"pdus":[{PDU}],"edus":[]}}"#);
        assert_eq!(
            pdus_in(m.endpoint, Direction::Request, body.as_bytes())
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn room_v12_create_event_has_no_room_id_but_other_events_need_one() {
        let create = r#"{"auth_events":[],"content":{"room_version":"12"},"depth":1,"hashes":{"sha256":"x"},"origin_server_ts":1,"prev_events":[],"sender":"@a:b","signatures":{},"state_key":"","type":"m.room.create"}"#;
        let v = PduView::parse(raw(create)).unwrap();
        assert_eq!(v.room_id, None);
        assert_eq!(v.event_type, "m.room.create");
        let msg = create.replace("m.room.create", "m.room.message");
        assert_eq!(
            PduView::parse(raw(&msg)).unwrap_err(),
            EventError::Missing("room_id")
        );
    }
}
