//! `mxc://` references in events: which media an event points to, so the guard can tell
//! whether a download belongs to an event that crossed.
//!
//! [`refs_in_event`] reads an event's `content` (the PDU or client form; only `content` is
//! read, never `unsigned`) at these places:
//!
//! | where                                   | [`RefPlace`]      | encrypted |
//! |-----------------------------------------|-------------------|-----------|
//! | `url` (messages, stickers, room avatar) | `Url`             | no        |
//! | `avatar_url` (`m.room.member`)          | `Url`             | no        |
//! | `info.thumbnail_url`                    | `ThumbnailUrl`    | no        |
//! | `file.url`                              | `File`            | yes       |
//! | `info.thumbnail_file.url`               | `ThumbnailFile`   | yes       |
//! | `m.file.url` (extensible events)        | `Url` / `File`    | if `m.file` has `key` and `iv` |
//! | `m.thumbnail[].url` (extensible events) | `ThumbnailUrl` / `ThumbnailFile` | likewise |
//!
//! and the same places inside `m.new_content` (the replacement content of an edit). The
//! places are read in every event type: a `url` is a reference wherever it is.
//!
//! A field that is absent, `null` or the empty string is no reference (a member event without
//! an avatar has `avatar_url: null` or `""`). Any other value that is not a valid mxc URI (a
//! number, an `http` URL, an invalid server name, a media id outside `[A-Za-z0-9_-]`) is
//! reported by [`refs_in_event_checked`] as an [`InvalidRef`] (where, never the value) and
//! left out of the references.
use serde_json::{Map, Value};

use crate::federation::server_name::ServerName;

/// Longest media id accepted (bytes).
pub const MAX_MEDIA_ID_BYTES: usize = 255;

/// Where in an event's content a reference was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefPlace {
    /// `url`, `avatar_url`, or an unencrypted `m.file`.
    Url,
    /// `info.thumbnail_url`, or an unencrypted `m.thumbnail` entry.
    ThumbnailUrl,
    /// `file` (an encrypted attachment), or an encrypted `m.file`.
    File,
    /// `info.thumbnail_file`, or an encrypted `m.thumbnail` entry.
    ThumbnailFile,
}

impl RefPlace {
    /// A short name for logs and decision records.
    pub fn as_str(self) -> &'static str {
        match self {
            RefPlace::Url => "url",
            RefPlace::ThumbnailUrl => "thumbnail_url",
            RefPlace::File => "file",
            RefPlace::ThumbnailFile => "thumbnail_file",
        }
    }
}

/// One reference of an event to a media item.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MxcRef {
    pub server_name: String,
    pub media_id: String,
    /// The media is an encrypted attachment: its bytes are ciphertext the guard cannot read.
    pub encrypted: bool,
    pub place: RefPlace,
}

/// A field that should hold an mxc URI but does not. Carries where, never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRef {
    /// The JSON path in the event, e.g. `content.m.new_content.info.thumbnail_url`.
    pub path: String,
    pub place: RefPlace,
}

/// Split `mxc://<server_name>/<media_id>`: the server name must be a valid Matrix server name,
/// the media id 1–255 characters of `[A-Za-z0-9_-]`; nothing may follow it (no query, no
/// fragment, no further `/`).
pub fn parse_mxc(uri: &str) -> Option<(String, String)> {
    let rest = uri.strip_prefix("mxc://")?;
    let (server, media) = rest.split_once('/')?;
    if media.is_empty()
        || media.len() > MAX_MEDIA_ID_BYTES
        || !media
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return None;
    }
    ServerName::parse(server).ok()?;
    Some((server.to_owned(), media.to_owned()))
}

/// The valid references in `event` (see the module docs), each (server, media, place) once.
pub fn refs_in_event(event: &Value) -> Vec<MxcRef> {
    refs_in_event_checked(event).0
}

/// The valid references in `event` and the fields that held something else.
pub fn refs_in_event_checked(event: &Value) -> (Vec<MxcRef>, Vec<InvalidRef>) {
    let mut found = Found::default();
    if let Some(content) = event.get("content").and_then(Value::as_object) {
        found.content(content, "content");
        if let Some(new) = content.get("m.new_content").and_then(Value::as_object) {
            found.content(new, "content.m.new_content");
        }
    }
    (found.refs, found.invalid)
}

#[derive(Default)]
struct Found {
    refs: Vec<MxcRef>,
    invalid: Vec<InvalidRef>,
}

impl Found {
    fn content(&mut self, c: &Map<String, Value>, at: &str) {
        self.uri(c.get("url"), at, "url", RefPlace::Url, false);
        self.uri(c.get("avatar_url"), at, "avatar_url", RefPlace::Url, false);
        if let Some(file) = c.get("file") {
            self.file(file, &format!("{at}.file"), RefPlace::File, true);
        }
        if let Some(info) = c.get("info").and_then(Value::as_object) {
            let at = format!("{at}.info");
            self.uri(
                info.get("thumbnail_url"),
                &at,
                "thumbnail_url",
                RefPlace::ThumbnailUrl,
                false,
            );
            if let Some(file) = info.get("thumbnail_file") {
                self.file(
                    file,
                    &format!("{at}.thumbnail_file"),
                    RefPlace::ThumbnailFile,
                    true,
                );
            }
        }
        // Extensible events (MSC1767 family): `m.file` and `m.thumbnail`.
        if let Some(file) = c.get("m.file") {
            let encrypted = is_encrypted_block(file);
            let place = if encrypted {
                RefPlace::File
            } else {
                RefPlace::Url
            };
            self.file(file, &format!("{at}.m.file"), place, encrypted);
        }
        match c.get("m.thumbnail") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let encrypted = is_encrypted_block(item);
                    let place = if encrypted {
                        RefPlace::ThumbnailFile
                    } else {
                        RefPlace::ThumbnailUrl
                    };
                    self.file(item, &format!("{at}.m.thumbnail[{i}]"), place, encrypted);
                }
            }
            Some(_) => self.bad(format!("{at}.m.thumbnail"), RefPlace::ThumbnailUrl),
        }
    }

    /// An object with a `url` (an encrypted file, or an extensible-event file block).
    fn file(&mut self, v: &Value, at: &str, place: RefPlace, encrypted: bool) {
        match v {
            Value::Null => {}
            Value::Object(o) => match o.get("url") {
                None | Some(Value::Null) => self.bad(format!("{at}.url"), place),
                url => self.uri(url, at, "url", place, encrypted),
            },
            _ => self.bad(at.to_owned(), place),
        }
    }

    fn uri(&mut self, v: Option<&Value>, at: &str, key: &str, place: RefPlace, encrypted: bool) {
        match v {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.is_empty() => {}
            Some(Value::String(s)) => match parse_mxc(s) {
                Some((server_name, media_id)) => {
                    let r = MxcRef {
                        server_name,
                        media_id,
                        encrypted,
                        place,
                    };
                    if !self.refs.contains(&r) {
                        self.refs.push(r);
                    }
                }
                None => self.bad(format!("{at}.{key}"), place),
            },
            Some(_) => self.bad(format!("{at}.{key}"), place),
        }
    }

    fn bad(&mut self, path: String, place: RefPlace) {
        self.invalid.push(InvalidRef { path, place });
    }
}

/// An extensible-event file block is encrypted when it carries the attachment key and IV.
fn is_encrypted_block(v: &Value) -> bool {
    v.get("key").is_some() && v.get("iv").is_some()
}

#[cfg(test)]
mod tests;
