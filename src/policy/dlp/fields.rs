//! Which strings of an event (or EDU, or user-data response) users can type, under stable
//! field names.
//!
//! Rules scope on these names (`scope.fields = ["body", "room.topic"]`); verdicts name the
//! field a match was found in, and spans are byte offsets into the string of that field as
//! written (HTML included: the engine reads it through `crate::text`).
//!
//! Reply fallbacks (`> <@user> quoted …` in `body`, `<mx-reply>` in `formatted_body`) are part
//! of those fields and are scanned with them.
use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde_json::value::RawValue;
use serde_json::Value;

macro_rules! fields {
    ($($(#[$doc:meta])* $v:ident = $s:literal,)*) => {
        /// A stable field name. `as_str` gives the name used in rule files and verdicts.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Field { $($(#[$doc])* $v,)* }
        impl Field {
            /// Every field, in a stable order (the bit order of field masks).
            pub const ALL: &'static [Field] = &[$(Field::$v,)*];
            pub fn as_str(self) -> &'static str {
                match self { $(Field::$v => $s,)* }
            }
        }
    };
}

fields! {
    /// `content.body` of messages and stickers (includes a reply fallback).
    Body = "body",
    /// `content.formatted_body` (HTML) reduced to text.
    FormattedBody = "formatted_body",
    /// `content.filename` of file/image/audio/video messages, `content.info.name` if present.
    FileName = "filename",
    /// `content["m.new_content"].body` of an edit.
    NewContentBody = "new_content.body",
    /// `content["m.new_content"].formatted_body` of an edit, as text.
    NewContentFormattedBody = "new_content.formatted_body",
    /// Extensible-event text (`m.text`, `org.matrix.msc1767.text`), including in edits.
    Text = "text",
    /// Poll question (`m.poll` / `org.matrix.msc3381.poll.start`).
    PollQuestion = "poll.question",
    /// Poll answers.
    PollAnswer = "poll.answer",
    /// Location description (`m.location.description`) and `geo_uri`.
    Location = "location",
    /// `m.room.name` name.
    RoomName = "room.name",
    /// `m.room.topic` topic (plain and `m.topic` text).
    RoomTopic = "room.topic",
    /// `m.room.canonical_alias` alias and alt_aliases, legacy `m.room.aliases`.
    RoomAlias = "room.alias",
    /// `m.room.member` displayname.
    MemberDisplayName = "member.displayname",
    /// A free-text `reason` (member kick/ban/leave, redaction, report).
    Reason = "reason",
    /// `m.reaction` annotation key (free text in most clients).
    ReactionKey = "reaction.key",
    /// `m.presence` EDU `status_msg`.
    PresenceStatusMsg = "presence.status_msg",
    /// Device display name (`m.device_list_update` EDU, user-keys/devices responses).
    DeviceDisplayName = "device.display_name",
    /// Profile query response `displayname`.
    ProfileDisplayName = "profile.displayname",
    /// An avatar (`avatar_url`) of a profile or a directory entry: an `mxc://` URI, but one a
    /// user sets to any string.
    AvatarUrl = "avatar_url",
    /// Public room directory entry name.
    DirectoryName = "directory.name",
    /// Public room directory entry topic.
    DirectoryTopic = "directory.topic",
    /// Public room directory entry canonical alias.
    DirectoryAlias = "directory.alias",
    /// Any other string value or object key of an event's `content` (matches name the path,
    /// `content.<path>`).
    Content = "content",
    /// The event `type`.
    EventType = "type",
    /// The event `state_key`.
    StateKey = "state_key",
    /// The `redacts` event id of a redaction (top level in old room versions).
    Redacts = "redacts",
    /// Forwarded `unsigned` data of an event.
    Unsigned = "unsigned",
    /// Every other member of an event, keys, strings and numbers: `sender`, `room_id`,
    /// `event_id`, `origin`, `depth`, the server names and key ids of `signatures` (not the
    /// base64 values of hashes, signatures and the ids in `auth_events`/`prev_events`), and
    /// members the spec does not name, which a server may add and the guard forwards (matches
    /// name the path, `event.<path>`).
    Event = "event",
    /// Any string value or object key of an EDU's content that has no field of its own.
    Edu = "edu",
    /// A path parameter of a request (room alias, user id, …), percent-decoded.
    RequestPath = "request.path",
    /// A query-string parameter of a request (name and value), percent-decoded.
    RequestQuery = "request.query",
    /// A string value, number or object key of a request body that is not an event (directory
    /// search, user and key queries).
    RequestBody = "request.body",
    /// Any other key, string or number of a response (`federation::response_text`): key
    /// material, identifiers, custom profile field names, directory entry members, error
    /// messages.
    ResponseBody = "response.body",
    /// Text extracted from a file crossing the guard (media downloads and thumbnails:
    /// `crate::media::extract`), archive entries included.
    MediaText = "media.text",
    /// A name inside a file crossing the guard: archive entry paths, document titles and
    /// authors, image comments.
    MediaName = "media.name",
}

impl Field {
    /// Bit of this field in a `u64` mask.
    pub fn bit(self) -> u64 {
        1 << (self as u32)
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Field {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Field::ALL
            .iter()
            .copied()
            .find(|f| f.as_str() == s)
            .ok_or(())
    }
}

fn push_str<'a>(out: &mut Vec<(Field, Cow<'a, str>)>, field: Field, v: Option<&'a Value>) {
    if let Some(Value::String(s)) = v {
        if !s.is_empty() {
            out.push((field, Cow::Borrowed(s.as_str())));
        }
    }
}

/// Extensible-event text: a string, or an array of `{body, mimetype}` representations.
fn push_text<'a>(out: &mut Vec<(Field, Cow<'a, str>)>, field: Field, v: Option<&'a Value>) {
    match v {
        Some(Value::String(_)) => push_str(out, field, v),
        // Every representation as written; HTML ones are read as HTML by the engine like any
        // string with `&` or `<` (`crate::text`).
        Some(Value::Array(reps)) => {
            for rep in reps {
                push_str(out, field, rep.get("body"));
            }
        }
        _ => {}
    }
}

fn push_extensible<'a>(out: &mut Vec<(Field, Cow<'a, str>)>, field: Field, obj: &'a Value) {
    for key in ["m.text", "org.matrix.msc1767.text"] {
        push_text(out, field, obj.get(key));
    }
}

fn push_poll<'a>(out: &mut Vec<(Field, Cow<'a, str>)>, poll: &'a Value) {
    if let Some(q) = poll.get("question") {
        match q {
            Value::String(_) => push_str(out, Field::PollQuestion, Some(q)),
            _ => {
                push_str(out, Field::PollQuestion, q.get("body"));
                push_extensible(out, Field::PollQuestion, q);
            }
        }
    }
    if let Some(Value::Array(answers)) = poll.get("answers") {
        for a in answers {
            push_str(out, Field::PollAnswer, a.get("body"));
            push_extensible(out, Field::PollAnswer, a);
        }
    }
}

/// Message-like content (also the inside of `m.new_content`).
fn push_message<'a>(
    out: &mut Vec<(Field, Cow<'a, str>)>,
    content: &'a Value,
    body: Field,
    formatted: Field,
) {
    push_str(out, body, content.get("body"));
    push_str(out, formatted, content.get("formatted_body"));
    push_str(out, Field::FileName, content.get("filename"));
    if let Some(info) = content.get("info") {
        push_str(out, Field::FileName, info.get("name"));
    }
    push_extensible(out, Field::Text, content);
    push_str(out, Field::Location, content.get("geo_uri"));
    if let Some(loc) = content
        .get("m.location")
        .or_else(|| content.get("org.matrix.msc3488.location"))
    {
        push_str(out, Field::Location, loc.get("description"));
        push_str(out, Field::Location, loc.get("uri"));
    }
    for key in ["m.poll", "org.matrix.msc3381.poll.start", "m.poll.start"] {
        if let Some(p) = content.get(key) {
            push_poll(out, p);
        }
    }
}

/// Every user-typed string of an event's `content`, by event type.
///
/// Unknown event types still yield `body`/`formatted_body`/`filename`/extensible text if
/// present (custom message-like events would otherwise bypass every rule).
pub fn fields<'a>(event_type: &str, content: &'a Value) -> Vec<(Field, Cow<'a, str>)> {
    let mut out = Vec::new();
    if !content.is_object() {
        return out;
    }
    match event_type {
        "m.room.name" => push_str(&mut out, Field::RoomName, content.get("name")),
        "m.room.topic" => {
            push_str(&mut out, Field::RoomTopic, content.get("topic"));
            if let Some(t) = content.get("m.topic") {
                push_text(&mut out, Field::RoomTopic, t.get("m.text"));
                push_text(&mut out, Field::RoomTopic, Some(t));
            }
        }
        "m.room.canonical_alias" | "m.room.aliases" => {
            push_str(&mut out, Field::RoomAlias, content.get("alias"));
            for key in ["alt_aliases", "aliases"] {
                if let Some(Value::Array(a)) = content.get(key) {
                    for v in a {
                        push_str(&mut out, Field::RoomAlias, Some(v));
                    }
                }
            }
        }
        "m.room.member" => {
            push_str(
                &mut out,
                Field::MemberDisplayName,
                content.get("displayname"),
            );
            push_str(&mut out, Field::Reason, content.get("reason"));
        }
        "m.reaction" => {
            if let Some(rel) = content.get("m.relates_to") {
                push_str(&mut out, Field::ReactionKey, rel.get("key"));
            }
        }
        "m.presence" => push_str(
            &mut out,
            Field::PresenceStatusMsg,
            content.get("status_msg"),
        ),
        "m.device_list_update" => push_str(
            &mut out,
            Field::DeviceDisplayName,
            content.get("device_display_name"),
        ),
        _ => {
            push_message(&mut out, content, Field::Body, Field::FormattedBody);
            push_str(&mut out, Field::Reason, content.get("reason"));
            if let Some(nc) = content.get("m.new_content").filter(|v| v.is_object()) {
                push_message(
                    &mut out,
                    nc,
                    Field::NewContentBody,
                    Field::NewContentFormattedBody,
                );
            }
        }
    }
    out
}

/// Fields of an EDU (`m.presence`: every `push[].status_msg`; `m.device_list_update`:
/// `device_display_name`). Other EDU types carry nothing users type.
pub fn edu_fields<'a>(edu_type: &str, content: &'a Value) -> Vec<(Field, Cow<'a, str>)> {
    let mut out = Vec::new();
    match edu_type {
        "m.presence" => {
            if let Some(Value::Array(push)) = content.get("push") {
                for p in push {
                    push_str(&mut out, Field::PresenceStatusMsg, p.get("status_msg"));
                }
            }
        }
        "m.device_list_update" => push_str(
            &mut out,
            Field::DeviceDisplayName,
            content.get("device_display_name"),
        ),
        _ => {}
    }
    out
}

/// Fields of a profile query response (`/_matrix/federation/v1/query/profile`).
pub fn profile_fields(response: &Value) -> Vec<(Field, Cow<'_, str>)> {
    let mut out = Vec::new();
    push_str(
        &mut out,
        Field::ProfileDisplayName,
        response.get("displayname"),
    );
    out
}

/// Fields of one public room directory entry (`publicRooms` `chunk[]`).
pub fn directory_fields(entry: &Value) -> Vec<(Field, Cow<'_, str>)> {
    let mut out = Vec::new();
    push_str(&mut out, Field::DirectoryName, entry.get("name"));
    push_str(&mut out, Field::DirectoryTopic, entry.get("topic"));
    push_str(
        &mut out,
        Field::DirectoryAlias,
        entry.get("canonical_alias"),
    );
    out
}

/// Fields of a device list (`/user/devices` response `devices[]`, `/user/keys/query`
/// `device_keys.*.*.unsigned.device_display_name`).
pub fn device_fields(devices: &Value) -> Vec<(Field, Cow<'_, str>)> {
    let mut out = Vec::new();
    if let Some(Value::Array(list)) = devices.get("devices") {
        for d in list {
            push_str(&mut out, Field::DeviceDisplayName, d.get("display_name"));
        }
    }
    if let Some(Value::Object(users)) = devices.get("device_keys") {
        for devs in users.values() {
            if let Value::Object(devs) = devs {
                for d in devs.values() {
                    if let Some(u) = d.get("unsigned") {
                        push_str(
                            &mut out,
                            Field::DeviceDisplayName,
                            u.get("device_display_name"),
                        );
                    }
                }
            }
        }
    }
    out
}

/// One step of a JSON path.
#[derive(Debug, Clone, Copy)]
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// What the walker reports: a string value, an object key, or a number (as written).
enum Leaf<'a> {
    Str(&'a str),
    Key(&'a str),
    Num(String),
}

/// Top-level members that a walk leaves out, wholly or but for their keys.
#[derive(Debug, Clone, Copy)]
struct Skip {
    /// Not walked at all (an event's members judged as fields of their own).
    omit: &'static [&'static str],
    /// Only their object keys, two levels deep: a to-device EDU's `messages` (the recipients
    /// are text, the messages are judged one by one); an event's `hashes` and `signatures`
    /// (server names and key ids are text, the base64 values are not) and its
    /// `auth_events`/`prev_events` (event ids: base64 hashes from room version 3 on).
    keys_only: &'static [&'static str],
}

impl Skip {
    const NOTHING: Skip = Skip {
        omit: &[],
        keys_only: &[],
    };
}

/// The members of an event that [`event_texts`] judges as fields of their own; the rest of
/// the event is field `event`.
const EVENT_PARTS: &[&str] = &["type", "state_key", "redacts", "content", "unsigned"];

/// The members of an event that hold hashes and signatures (and, in room versions 1 and 2,
/// hashes beside the ids): only their keys are text.
const EVENT_DIGESTS: &[&str] = &[
    "hashes",
    "signatures",
    "auth_events",
    "prev_events",
    "prev_state",
];

/// Walk every string value, object key and number under `v` (depth first, object order),
/// skipping string values listed in `known` (by address) and the top-level members named in
/// `skip`.
fn walk<'a>(
    v: &'a Value,
    known: &[(usize, usize)],
    skip: Skip,
    path: &mut Vec<Seg<'a>>,
    f: &mut dyn FnMut(&[Seg<'a>], Leaf<'a>),
) {
    match v {
        Value::String(s) => {
            if !known.contains(&(s.as_ptr() as usize, s.len())) {
                f(path, Leaf::Str(s));
            }
        }
        Value::Number(n) => f(path, Leaf::Num(n.to_string())),
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                path.push(Seg::Index(i));
                walk(x, known, skip, path, f);
                path.pop();
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                let top = path.is_empty();
                if top && skip.omit.contains(&k.as_str()) {
                    continue;
                }
                path.push(Seg::Key(k));
                f(path, Leaf::Key(k));
                if top && skip.keys_only.contains(&k.as_str()) {
                    keys_of(x, 2, path, f);
                } else {
                    walk(x, known, skip, path, f);
                }
                path.pop();
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

/// The object keys of `v`, `depth` levels deep, without the values: of a to-device EDU's
/// `messages`, the recipients (user ids, device ids) whose messages are judged on their own.
fn keys_of<'a>(
    v: &'a Value,
    depth: usize,
    path: &mut Vec<Seg<'a>>,
    f: &mut dyn FnMut(&[Seg<'a>], Leaf<'a>),
) {
    if depth == 0 {
        return;
    }
    if let Value::Object(o) = v {
        for (k, x) in o {
            path.push(Seg::Key(k));
            f(path, Leaf::Key(k));
            keys_of(x, depth - 1, path, f);
            path.pop();
        }
    }
}

fn render_path(root: &str, path: &[Seg<'_>], key: bool) -> String {
    let mut out = root.to_owned();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    if key {
        out.push_str(" (key)");
    }
    out
}

/// A JSON tree walked into one blob field.
#[derive(Debug)]
struct Blob<'a> {
    /// Index of the blob among [`Texts::fields`].
    piece: usize,
    root: &'static str,
    value: &'a Value,
    skip: Skip,
}

/// Every piece of text of one unit (event, EDU, to-device message) for the engine: the
/// fields with their own names, and one *blob* per generic field (`content`, `unsigned`,
/// `edu`) holding every other string value, object key and number of that tree, one per line.
/// [`Texts::path_of`] names the JSON path of a match in a blob.
#[derive(Debug)]
pub struct Texts<'a> {
    pub fields: Vec<(Field, Cow<'a, str>)>,
    blobs: Vec<Blob<'a>>,
    known: Vec<(usize, usize)>,
    /// Pieces that are not written in the unit but derived from it (decoded ciphertext), with
    /// the path they were derived from.
    derived: Vec<(usize, String)>,
}

impl<'a> Texts<'a> {
    fn new() -> Self {
        Texts {
            fields: Vec::new(),
            blobs: Vec::new(),
            known: Vec::new(),
            derived: Vec::new(),
        }
    }

    fn push(&mut self, field: Field, s: &'a str) {
        if !s.is_empty() {
            self.fields.push((field, Cow::Borrowed(s)));
        }
    }

    /// Add the known fields `known` (already extracted, borrowed from `value`) and a blob of the
    /// rest of `value`.
    fn add_tree(
        &mut self,
        known: Vec<(Field, Cow<'a, str>)>,
        field: Field,
        root: &'static str,
        value: &'a Value,
        skip: Skip,
    ) {
        for (_, t) in &known {
            if let Cow::Borrowed(b) = t {
                self.known.push((b.as_ptr() as usize, b.len()));
            }
        }
        self.fields.extend(known);
        let mut blob = String::new();
        walk(value, &self.known, skip, &mut Vec::new(), &mut |_, leaf| {
            if !blob.is_empty() {
                blob.push('\n');
            }
            match leaf {
                Leaf::Str(s) | Leaf::Key(s) => blob.push_str(s),
                Leaf::Num(n) => blob.push_str(&n),
            }
        });
        if !blob.is_empty() {
            self.blobs.push(Blob {
                piece: self.fields.len(),
                root,
                value,
                skip,
            });
            self.fields.push((field, Cow::Owned(blob)));
        }
    }

    /// Add the bytes of a ciphertext that is not a well-formed Olm/Megolm message, read as
    /// text: what does not parse as ciphertext is judged like anything else.
    fn add_decoded(&mut self, content: &Value) {
        if let crate::federation::e2ee::Ciphertext::Malformed { decoded } =
            crate::federation::e2ee::classify(content)
        {
            for bytes in decoded {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                if !text.is_empty() {
                    self.derived
                        .push((self.fields.len(), "content.ciphertext (decoded)".to_owned()));
                    self.fields.push((Field::Content, Cow::Owned(text)));
                }
            }
        }
    }

    /// Where in the unit a match at `start` of text `piece` (an index into
    /// [`Texts::fields`]) lies, for texts without a fixed field name: the JSON path of the
    /// string, key or number in a blob field (`content.foo.bar`, `content.foo (key)`), or what
    /// a derived text was derived from. `None` for fields with their own name.
    pub fn path_of(&self, piece: usize, start: usize) -> Option<String> {
        self.locate(piece, start).map(|(path, _)| path)
    }

    /// [`Texts::path_of`] and the offset in the piece at which that string, key or number
    /// starts (a span minus it is a span in the value itself; 0 for derived texts).
    pub fn locate(&self, piece: usize, start: usize) -> Option<(String, usize)> {
        if let Some((_, p)) = self.derived.iter().find(|(i, _)| *i == piece) {
            return Some((p.clone(), 0));
        }
        let b = self.blobs.iter().find(|b| b.piece == piece)?;
        let mut at = 0usize;
        let mut found = None;
        walk(
            b.value,
            &self.known,
            b.skip,
            &mut Vec::new(),
            &mut |path, leaf| {
                if found.is_some() {
                    return;
                }
                if at > 0 {
                    at += 1;
                }
                let (len, key) = match &leaf {
                    Leaf::Str(s) => (s.len(), false),
                    Leaf::Key(s) => (s.len(), true),
                    Leaf::Num(n) => (n.len(), false),
                };
                if start < at + len.max(1) {
                    found = Some((render_path(b.root, path, key), at));
                }
                at += len;
            },
        );
        Some(found.unwrap_or_else(|| (b.root.to_owned(), 0)))
    }
}

/// The parts of an event that carry text.
#[derive(Debug, Clone, Copy)]
pub struct EventParts<'a> {
    pub event_type: &'a str,
    pub state_key: Option<&'a str>,
    /// Top-level `redacts` (room versions 1–10).
    pub redacts: Option<&'a str>,
    pub content: &'a Value,
    pub unsigned: Option<&'a Value>,
    /// The whole event, whose members other than the ones above are judged as field
    /// `event`; `None` when only the parts are known (a to-device message, content alone).
    pub envelope: Option<&'a Value>,
}

impl<'a> EventParts<'a> {
    /// The parts of an event given as JSON (`type`, `state_key`, `redacts`, `content`,
    /// `unsigned`, and the event itself as the envelope); a missing `content` reads as `null`.
    pub fn of(event: &'a Value) -> EventParts<'a> {
        const NULL: Value = Value::Null;
        EventParts {
            event_type: event.get("type").and_then(Value::as_str).unwrap_or(""),
            state_key: event.get("state_key").and_then(Value::as_str),
            redacts: event.get("redacts").and_then(Value::as_str),
            content: event.get("content").unwrap_or(&NULL),
            unsigned: event.get("unsigned"),
            envelope: Some(event),
        }
    }
}

/// What a layer judges of one unit: a whole event as received (every member is text), or the
/// `content` of a to-device message, which has no envelope of its own (its EDU is judged
/// separately).
#[derive(Debug, Clone, Copy)]
pub enum Judged<'a> {
    Event(&'a RawValue),
    Content {
        event_type: &'a str,
        content: &'a RawValue,
    },
}

impl<'a> Judged<'a> {
    /// The unit as a JSON value; `None` when it does not parse (validated bodies always do).
    pub fn value(self) -> Option<Value> {
        let raw = match self {
            Judged::Event(raw) => raw,
            Judged::Content { content, .. } => content,
        };
        serde_json::from_str(raw.get()).ok()
    }

    /// The parts of `value` (the unit's [`Judged::value`]).
    pub fn parts<'v>(self, value: &'v Value) -> EventParts<'v>
    where
        'a: 'v,
    {
        match self {
            Judged::Event(_) => EventParts::of(value),
            Judged::Content { event_type, .. } => EventParts {
                event_type,
                state_key: None,
                redacts: None,
                content: value,
                unsigned: None,
                envelope: None,
            },
        }
    }
}

/// Every piece of text of an event: `type`, `state_key`, `redacts`, the known fields of its
/// `content` (by type, see [`fields`]), every other string, key and number of `content`
/// (field `content`), of `unsigned` (field `unsigned`) and of the rest of the envelope
/// (field `event`: `sender`, ids, signature key ids, unnamed members), and the decoded bytes
/// of a `ciphertext` that is no well-formed Olm/Megolm message (field `content`).
pub fn event_texts<'a>(ev: EventParts<'a>) -> Texts<'a> {
    let mut t = Texts::new();
    t.push(Field::EventType, ev.event_type);
    if let Some(k) = ev.state_key {
        t.push(Field::StateKey, k);
    }
    if let Some(r) = ev.redacts {
        t.push(Field::Redacts, r);
    }
    t.add_tree(
        fields(ev.event_type, ev.content),
        Field::Content,
        "content",
        ev.content,
        Skip::NOTHING,
    );
    t.add_decoded(ev.content);
    if let Some(u) = ev.unsigned {
        t.add_tree(Vec::new(), Field::Unsigned, "unsigned", u, Skip::NOTHING);
    }
    if let Some(e) = ev.envelope {
        // A `type`, `state_key` or `redacts` that is no string was not judged above: then it
        // is judged here.
        let strings = ["type", "state_key", "redacts"]
            .iter()
            .all(|k| e.get(k).is_none_or(Value::is_string));
        let skip = if strings {
            EVENT_PARTS
        } else {
            &EVENT_PARTS[3..]
        };
        let skip = Skip {
            omit: skip,
            keys_only: EVENT_DIGESTS,
        };
        t.add_tree(Vec::new(), Field::Event, "event", e, skip);
    }
    t
}

/// Every piece of text of an EDU: its type, the known fields ([`edu_fields`]) and every other
/// string, key and number of its content (field `edu`). The per-device messages of
/// `m.direct_to_device` are not included: they are judged one by one as to-device messages.
/// Their recipients are: the user and device ids (keys of `messages`) are text a sender
/// chooses (a remote device id is not checked by the sending server).
pub fn edu_texts<'a>(edu_type: &'a str, content: &'a Value) -> Texts<'a> {
    let mut t = Texts::new();
    t.push(Field::EventType, edu_type);
    let skip = if edu_type == "m.direct_to_device" {
        Skip {
            omit: &[],
            keys_only: &["messages"],
        }
    } else {
        Skip::NOTHING
    };
    t.add_tree(
        edu_fields(edu_type, content),
        Field::Edu,
        "content",
        content,
        skip,
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names(v: &[(Field, Cow<'_, str>)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(f, s)| (f.as_str().to_owned(), s.to_string()))
            .collect()
    }

    #[test]
    fn field_names_round_trip_and_fit_mask() {
        assert!(Field::ALL.len() <= 64);
        for f in Field::ALL {
            assert_eq!(f.as_str().parse::<Field>(), Ok(*f));
        }
        assert!("bodyy".parse::<Field>().is_err());
    }

    #[test]
    fn message_with_edit_and_html() {
        let c = json!({
            "msgtype": "m.text", "body": "* neu",
            "format": "org.matrix.custom.html", "formatted_body": "<p>a&amp;b</p><p>DE89<b></b>37</p>",
            "m.new_content": {"msgtype": "m.text", "body": "IBAN DE89", "formatted_body": "<a href=\"https://x/?q=1\">link</a>"}
        });
        let f = names(&fields("m.room.message", &c));
        assert!(f.contains(&("body".into(), "* neu".into())));
        assert!(
            f.contains(&(
                "formatted_body".into(),
                "<p>a&amp;b</p><p>DE89<b></b>37</p>".into()
            )),
            "{f:?}"
        );
        assert!(f.contains(&("new_content.body".into(), "IBAN DE89".into())));
        assert!(
            f.contains(&(
                "new_content.formatted_body".into(),
                "<a href=\"https://x/?q=1\">link</a>".into()
            )),
            "{f:?}"
        );
    }

    #[test]
    fn state_events_and_polls() {
        let f = names(&fields(
            "m.room.topic",
            &json!({"topic": "Thema", "m.topic": [{"body": "<b>Thema</b>", "mimetype": "text/html"}]}),
        ));
        assert_eq!(
            f,
            vec![
                ("room.topic".into(), "Thema".into()),
                ("room.topic".into(), "<b>Thema</b>".into())
            ]
        );
        let f = names(&fields(
            "m.room.canonical_alias",
            &json!({"alias": "#a:x", "alt_aliases": ["#b:x"]}),
        ));
        assert_eq!(f.len(), 2);
        let f = names(&fields(
            "m.room.member",
            &json!({"membership": "join", "displayname": "Alice"}),
        ));
        assert_eq!(f, vec![("member.displayname".into(), "Alice".into())]);
        let poll = json!({"org.matrix.msc3381.poll.start": {"question": {"org.matrix.msc1767.text": "Frage?"},
            "answers": [{"id": "a", "org.matrix.msc1767.text": "Ja"}, {"id": "b", "m.text": [{"body": "Nein"}]}]}});
        let f = names(&fields("org.matrix.msc3381.poll.start", &poll));
        assert!(f.contains(&("poll.question".into(), "Frage?".into())));
        assert!(f.contains(&("poll.answer".into(), "Ja".into())));
        assert!(f.contains(&("poll.answer".into(), "Nein".into())));
        let f = names(&fields(
            "m.room.message",
            &json!({"msgtype": "m.location", "body": "Hier", "geo_uri": "geo:52.5,13.4"}),
        ));
        assert!(f.contains(&("location".into(), "geo:52.5,13.4".into())));
        let f = names(&fields(
            "m.room.message",
            &json!({"msgtype": "m.file", "body": "x", "filename": "Bericht_GEHEIM.pdf"}),
        ));
        assert!(f.contains(&("filename".into(), "Bericht_GEHEIM.pdf".into())));
    }

    #[test]
    fn every_string_key_and_number_is_scanned_with_its_path() {
        let ev = json!({"type": "org.example.GEHEIM", "state_key": "sk", "content": {
            "msgtype": "m.text", "body": "hallo", "x-custom": {"deep": ["a", {"GEHEIM-key": 4711}]}
        }, "unsigned": {"note": "u"}});
        let t = event_texts(EventParts::of(&ev));
        let f = names(&t.fields);
        assert!(f.contains(&("type".into(), "org.example.GEHEIM".into())));
        assert!(f.contains(&("state_key".into(), "sk".into())));
        assert!(f.contains(&("body".into(), "hallo".into())));
        let blob = &f.iter().find(|(n, _)| n == "content").unwrap().1;
        // Object members in document order or key order (serde_json's `preserve_order`).
        let mut lines: Vec<&str> = blob.lines().collect();
        lines.sort();
        assert_eq!(
            lines,
            [
                "4711",
                "GEHEIM-key",
                "a",
                "body",
                "deep",
                "m.text",
                "msgtype",
                "x-custom"
            ],
            "known fields are not repeated"
        );
        let piece = t
            .fields
            .iter()
            .position(|(f, _)| *f == Field::Content)
            .unwrap();
        let at = blob.find("GEHEIM").unwrap();
        assert_eq!(
            t.path_of(piece, at).unwrap(),
            "content.x-custom.deep[1].GEHEIM-key (key)"
        );
        assert_eq!(
            t.path_of(piece, blob.find("4711").unwrap()).unwrap(),
            "content.x-custom.deep[1].GEHEIM-key"
        );
        assert_eq!(
            t.path_of(piece, blob.find("m.text").unwrap()).unwrap(),
            "content.msgtype"
        );
        assert!(f.contains(&("unsigned".into(), "note\nu".into())));
        let body = t
            .fields
            .iter()
            .position(|(f, _)| *f == Field::Body)
            .unwrap();
        assert_eq!(t.path_of(body, 0), None);
    }

    #[test]
    fn every_other_member_of_an_event_is_text_of_field_event() {
        let ev = json!({
            "type": "m.room.message", "state_key": "sk", "redacts": "$r",
            "content": {"body": "hallo"}, "unsigned": {"age": 1},
            "sender": "@de89370400440532013000:hs1", "room_id": "!r:hs1", "origin": "hs1",
            "depth": 7, "hashes": {"sha256": "h"}, "signatures": {"hs1": {"ed25519:GEHEIM": "s"}},
            "prev_events": ["$p"], "x_note": {"k": "VS-VERTRAULICH"}
        });
        let t = event_texts(EventParts::of(&ev));
        let f = names(&t.fields);
        let piece = t
            .fields
            .iter()
            .position(|(f, _)| *f == Field::Event)
            .expect("an event blob");
        let blob = &f[piece].1;
        let mut lines: Vec<&str> = blob.lines().collect();
        lines.sort();
        assert_eq!(
            lines,
            [
                "!r:hs1",
                "7",
                "@de89370400440532013000:hs1",
                "VS-VERTRAULICH",
                "depth",
                "ed25519:GEHEIM",
                "hashes",
                "hs1",
                "hs1",
                "k",
                "origin",
                "prev_events",
                "room_id",
                "sender",
                "sha256",
                "signatures",
                "x_note",
            ],
            "the parts judged as their own fields are not repeated; of hashes, signatures and \
             event ids only the keys"
        );
        assert_eq!(
            t.path_of(piece, blob.find("VS-").unwrap()).unwrap(),
            "event.x_note.k"
        );
        assert_eq!(
            t.path_of(piece, blob.find("@de89").unwrap()).unwrap(),
            "event.sender"
        );
        assert_eq!(
            t.path_of(piece, blob.find("ed25519:GEHEIM").unwrap())
                .unwrap(),
            "event.signatures.hs1.ed25519:GEHEIM (key)"
        );
        // A `state_key` that is no string is not judged as field `state_key`: it is judged here.
        let odd = json!({"type": "m.x", "state_key": {"GEHEIM": 1}, "content": {}});
        let t = event_texts(EventParts::of(&odd));
        let f = names(&t.fields);
        assert!(
            f.iter().any(|(n, s)| n == "event" && s.contains("GEHEIM")),
            "{f:?}"
        );
        // Without an envelope (to-device content) there is no field `event`.
        let c = json!({"body": "x"});
        let t = event_texts(EventParts {
            event_type: "m.room.message",
            state_key: None,
            redacts: None,
            content: &c,
            unsigned: None,
            envelope: None,
        });
        assert!(t.fields.iter().all(|(f, _)| *f != Field::Event));
    }

    #[test]
    fn malformed_ciphertext_is_read_as_text() {
        use base64::Engine as _;
        let plain = base64::engine::general_purpose::STANDARD_NO_PAD
            .encode("Einstufung GEHEIM, bitte weiterleiten");
        let c = json!({"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": plain, "sender_key": "k", "session_id": "s", "device_id": "D"});
        let t = event_texts(EventParts {
            event_type: "m.room.encrypted",
            state_key: None,
            redacts: None,
            content: &c,
            unsigned: None,
            envelope: None,
        });
        let (i, _) = t
            .fields
            .iter()
            .enumerate()
            .find(|(_, (_, s))| s.contains("GEHEIM"))
            .expect("decoded text is scanned");
        assert_eq!(t.path_of(i, 0).unwrap(), "content.ciphertext (decoded)");
    }

    #[test]
    fn to_device_messages_are_not_part_of_the_edu_blob() {
        let c = json!({"sender": "@a:x", "type": "m.room_key_request", "message_id": "m1",
            "messages": {"@b:y": {"DEV": {"secret": "GEHEIM"}}}});
        let t = edu_texts("m.direct_to_device", &c);
        let blob = t
            .fields
            .iter()
            .find(|(f, _)| *f == Field::Edu)
            .unwrap()
            .1
            .to_string();
        assert!(
            !blob.contains("GEHEIM") && blob.contains("messages"),
            "{blob}"
        );
        // The recipients are text a sender chooses: user and device ids are in the blob, and
        // a match names where it lies.
        let c = json!({"sender": "@a:x", "type": "m.x", "message_id": "m1",
            "messages": {"@GEHEIM-u:y": {"DEV": {"n": 1}}, "@b:y": {"GEHEIM-d": {"n": 2}}}});
        let t = edu_texts("m.direct_to_device", &c);
        let (i, blob) = t
            .fields
            .iter()
            .enumerate()
            .find(|(_, (f, _))| *f == Field::Edu)
            .map(|(i, (_, b))| (i, b.to_string()))
            .unwrap();
        assert!(
            blob.contains("@GEHEIM-u:y") && blob.contains("GEHEIM-d"),
            "{blob}"
        );
        assert!(
            !blob.lines().any(|l| l == "n"),
            "no message content: {blob}"
        );
        let at = blob.find("GEHEIM-d").unwrap();
        assert_eq!(
            t.path_of(i, at).unwrap(),
            "content.messages.@b:y.GEHEIM-d (key)"
        );
    }

    #[test]
    fn edus_and_responses() {
        let f = names(&edu_fields(
            "m.presence",
            &json!({"push": [{"user_id": "@a:x", "status_msg": "im Urlaub"}]}),
        ));
        assert_eq!(f, vec![("presence.status_msg".into(), "im Urlaub".into())]);
        let f = names(&profile_fields(&json!({"displayname": "Bob"})));
        assert_eq!(f, vec![("profile.displayname".into(), "Bob".into())]);
        let f = names(&directory_fields(
            &json!({"name": "N", "topic": "T", "canonical_alias": "#c:x"}),
        ));
        assert_eq!(f.len(), 3);
        let f = names(&device_fields(
            &json!({"devices": [{"device_id": "D", "display_name": "Laptop"}]}),
        ));
        assert_eq!(f, vec![("device.display_name".into(), "Laptop".into())]);
    }
}
