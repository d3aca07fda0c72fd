//! Which strings of an event (or EDU, or user-data response) users can type, under stable
//! field names.
//!
//! Rules scope on these names (`scope.fields = ["body", "room.topic"]`); verdicts name the
//! field a match was found in, and spans are byte offsets into the extracted string of that
//! field (for `formatted_body` that is the HTML reduced to text, see [`html_to_text`]).
//!
//! Reply fallbacks (`> <@user> quoted …` in `body`, `<mx-reply>` in `formatted_body`) are part
//! of those fields and are scanned with them.
use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

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
    /// Any string value or object key of an EDU's content that has no field of its own.
    Edu = "edu",
    /// A path parameter of a request (room alias, user id, …), percent-decoded.
    RequestPath = "request.path",
    /// A query-string parameter of a request (name and value), percent-decoded.
    RequestQuery = "request.query",
    /// A string value or object key of a request body that is not an event (directory search,
    /// user and key queries).
    RequestBody = "request.body",
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
        Field::ALL.iter().copied().find(|f| f.as_str() == s).ok_or(())
    }
}

fn push_str<'a>(out: &mut Vec<(Field, Cow<'a, str>)>, field: Field, v: Option<&'a Value>) {
    if let Some(Value::String(s)) = v {
        if !s.is_empty() {
            out.push((field, Cow::Borrowed(s.as_str())));
        }
    }
}

fn push_html<'a>(out: &mut Vec<(Field, Cow<'a, str>)>, field: Field, v: Option<&'a Value>) {
    if let Some(Value::String(s)) = v {
        if !s.is_empty() {
            out.push((field, html_to_text(s)));
        }
    }
}

/// Extensible-event text: a string, or an array of `{body, mimetype}` representations.
fn push_text<'a>(out: &mut Vec<(Field, Cow<'a, str>)>, field: Field, v: Option<&'a Value>) {
    match v {
        Some(Value::String(_)) => push_str(out, field, v),
        Some(Value::Array(reps)) => {
            for rep in reps {
                let html = rep.get("mimetype").and_then(Value::as_str) == Some("text/html");
                if html {
                    push_html(out, field, rep.get("body"));
                } else {
                    push_str(out, field, rep.get("body"));
                }
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
fn push_message<'a>(out: &mut Vec<(Field, Cow<'a, str>)>, content: &'a Value, body: Field, formatted: Field) {
    push_str(out, body, content.get("body"));
    push_html(out, formatted, content.get("formatted_body"));
    push_str(out, Field::FileName, content.get("filename"));
    if let Some(info) = content.get("info") {
        push_str(out, Field::FileName, info.get("name"));
    }
    push_extensible(out, Field::Text, content);
    push_str(out, Field::Location, content.get("geo_uri"));
    if let Some(loc) = content.get("m.location").or_else(|| content.get("org.matrix.msc3488.location")) {
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
            push_str(&mut out, Field::MemberDisplayName, content.get("displayname"));
            push_str(&mut out, Field::Reason, content.get("reason"));
        }
        "m.reaction" => {
            if let Some(rel) = content.get("m.relates_to") {
                push_str(&mut out, Field::ReactionKey, rel.get("key"));
            }
        }
        "m.presence" => push_str(&mut out, Field::PresenceStatusMsg, content.get("status_msg")),
        "m.device_list_update" => push_str(&mut out, Field::DeviceDisplayName, content.get("device_display_name")),
        _ => {
            push_message(&mut out, content, Field::Body, Field::FormattedBody);
            push_str(&mut out, Field::Reason, content.get("reason"));
            if let Some(nc) = content.get("m.new_content").filter(|v| v.is_object()) {
                push_message(&mut out, nc, Field::NewContentBody, Field::NewContentFormattedBody);
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
        "m.device_list_update" => push_str(&mut out, Field::DeviceDisplayName, content.get("device_display_name")),
        _ => {}
    }
    out
}

/// Fields of a profile query response (`/_matrix/federation/v1/query/profile`).
pub fn profile_fields(response: &Value) -> Vec<(Field, Cow<'_, str>)> {
    let mut out = Vec::new();
    push_str(&mut out, Field::ProfileDisplayName, response.get("displayname"));
    out
}

/// Fields of one public room directory entry (`publicRooms` `chunk[]`).
pub fn directory_fields(entry: &Value) -> Vec<(Field, Cow<'_, str>)> {
    let mut out = Vec::new();
    push_str(&mut out, Field::DirectoryName, entry.get("name"));
    push_str(&mut out, Field::DirectoryTopic, entry.get("topic"));
    push_str(&mut out, Field::DirectoryAlias, entry.get("canonical_alias"));
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
                        push_str(&mut out, Field::DeviceDisplayName, u.get("device_display_name"));
                    }
                }
            }
        }
    }
    out
}

/// HTML → text for scanning: tags removed (block elements and `<br>` become a newline, inline
/// tags nothing, so `DE89<b></b>3704…` is read as one token), character references decoded,
/// and the values of `href`, `title` and `alt` attributes appended after the text (a link can
/// carry data the visible text does not). Comments are dropped. Never fails: malformed markup
/// is read as text.
pub fn html_to_text(html: &str) -> Cow<'_, str> {
    if !html.contains(['<', '&']) {
        return Cow::Borrowed(html);
    }
    let mut out = String::with_capacity(html.len());
    let mut attrs = String::new();
    let mut rest = html;
    while let Some(i) = rest.find(['<', '&']) {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if rest.starts_with('&') {
            let (s, used) = decode_entity(rest);
            match s {
                Some(c) => out.push(c),
                None => out.push('&'),
            }
            rest = &rest[used..];
            continue;
        }
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.find("-->").map_or("", |j| &after[j + 3..]);
            continue;
        }
        let Some(end) = rest.find('>') else {
            out.push_str(rest);
            rest = "";
            break;
        };
        let tag = &rest[1..end];
        rest = &rest[end + 1..];
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect::<String>()
            .to_ascii_lowercase();
        if matches!(
            name.as_str(),
            "br" | "p" | "div" | "li" | "ul" | "ol" | "tr" | "td" | "th" | "table" | "blockquote" | "pre"
                | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "hr" | "mx-reply" | "details" | "summary"
        ) && !out.ends_with('\n')
            && !out.is_empty()
        {
            out.push('\n');
        }
        collect_attrs(tag, &mut attrs);
    }
    out.push_str(rest);
    if !attrs.is_empty() {
        out.push('\n');
        out.push_str(&attrs);
    }
    Cow::Owned(out)
}

fn collect_attrs(tag: &str, attrs: &mut String) {
    for name in ["href", "title", "alt"] {
        let mut search = tag;
        while let Some(i) = search.to_ascii_lowercase().find(name) {
            let after = search[i + name.len()..].trim_start();
            search = &search[i + name.len()..];
            let Some(after) = after.strip_prefix('=') else { continue };
            let after = after.trim_start();
            let value = match after.chars().next() {
                Some(q @ ('"' | '\'')) => after[1..].split(q).next().unwrap_or(""),
                _ => after.split(|c: char| c.is_whitespace() || c == '/').next().unwrap_or(""),
            };
            if !value.is_empty() {
                attrs.push_str(&html_to_text(value));
                attrs.push('\n');
            }
        }
    }
}

/// Decode one character reference at the start of `s` (which starts with `&`). Returns the
/// character (None: not a reference, emit `&`) and how many bytes were used.
fn decode_entity(s: &str) -> (Option<char>, usize) {
    let Some(semi) = s[..s.len().min(12)].find(';') else { return (None, 1) };
    let name = &s[1..semi];
    let c = if let Some(num) = name.strip_prefix('#') {
        let v = if let Some(hex) = num.strip_prefix(['x', 'X']) {
            u32::from_str_radix(hex, 16).ok()
        } else {
            num.parse::<u32>().ok()
        };
        v.and_then(char::from_u32)
    } else {
        match name {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some(' '),
            "auml" => Some('ä'),
            "ouml" => Some('ö'),
            "uuml" => Some('ü'),
            "Auml" => Some('Ä'),
            "Ouml" => Some('Ö'),
            "Uuml" => Some('Ü'),
            "szlig" => Some('ß'),
            "shy" => Some('\u{ad}'),
            _ => None,
        }
    };
    match c {
        Some(c) => (Some(c), semi + 1),
        None => (None, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names(v: &[(Field, Cow<'_, str>)]) -> Vec<(String, String)> {
        v.iter().map(|(f, s)| (f.as_str().to_owned(), s.to_string())).collect()
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
        assert!(f.contains(&("formatted_body".into(), "a&b\nDE8937\n".into())), "{f:?}");
        assert!(f.contains(&("new_content.body".into(), "IBAN DE89".into())));
        assert!(f.contains(&("new_content.formatted_body".into(), "link\nhttps://x/?q=1\n".into())), "{f:?}");
    }

    #[test]
    fn state_events_and_polls() {
        let f = names(&fields("m.room.topic", &json!({"topic": "Thema", "m.topic": [{"body": "<b>Thema</b>", "mimetype": "text/html"}]})));
        assert_eq!(f, vec![("room.topic".into(), "Thema".into()), ("room.topic".into(), "Thema".into())]);
        let f = names(&fields("m.room.canonical_alias", &json!({"alias": "#a:x", "alt_aliases": ["#b:x"]})));
        assert_eq!(f.len(), 2);
        let f = names(&fields("m.room.member", &json!({"membership": "join", "displayname": "Alice"})));
        assert_eq!(f, vec![("member.displayname".into(), "Alice".into())]);
        let poll = json!({"org.matrix.msc3381.poll.start": {"question": {"org.matrix.msc1767.text": "Frage?"},
            "answers": [{"id": "a", "org.matrix.msc1767.text": "Ja"}, {"id": "b", "m.text": [{"body": "Nein"}]}]}});
        let f = names(&fields("org.matrix.msc3381.poll.start", &poll));
        assert!(f.contains(&("poll.question".into(), "Frage?".into())));
        assert!(f.contains(&("poll.answer".into(), "Ja".into())));
        assert!(f.contains(&("poll.answer".into(), "Nein".into())));
        let f = names(&fields("m.room.message", &json!({"msgtype": "m.location", "body": "Hier", "geo_uri": "geo:52.5,13.4"})));
        assert!(f.contains(&("location".into(), "geo:52.5,13.4".into())));
        let f = names(&fields("m.room.message", &json!({"msgtype": "m.file", "body": "x", "filename": "Bericht_GEHEIM.pdf"})));
        assert!(f.contains(&("filename".into(), "Bericht_GEHEIM.pdf".into())));
    }

    #[test]
    fn edus_and_responses() {
        let f = names(&edu_fields("m.presence", &json!({"push": [{"user_id": "@a:x", "status_msg": "im Urlaub"}]})));
        assert_eq!(f, vec![("presence.status_msg".into(), "im Urlaub".into())]);
        let f = names(&profile_fields(&json!({"displayname": "Bob"})));
        assert_eq!(f, vec![("profile.displayname".into(), "Bob".into())]);
        let f = names(&directory_fields(&json!({"name": "N", "topic": "T", "canonical_alias": "#c:x"})));
        assert_eq!(f.len(), 3);
        let f = names(&device_fields(&json!({"devices": [{"device_id": "D", "display_name": "Laptop"}]})));
        assert_eq!(f, vec![("device.display_name".into(), "Laptop".into())]);
    }

    #[test]
    fn html_edge_cases() {
        assert_eq!(html_to_text("a < b"), "a < b");
        assert_eq!(html_to_text("&#x44;&#69;89 &unknown; <!-- x -->y"), "DE89 &unknown; y");
        assert_eq!(html_to_text("plain"), "plain");
    }
}
