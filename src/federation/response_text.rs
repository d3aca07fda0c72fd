//! Text a response carries outside its events and its user-data fields.
//!
//! Events in a response are judged per event, and the user-typed fields of user-data and
//! directory responses per field (`federation::userdata`). Everything else a response carries
//! is text too: device and one-time keys a client uploaded (a server stores them as given),
//! custom profile field names, a room's `room_type` or `join_rule` in a directory entry, error
//! messages, and any member a server adds. Nothing of a body is left unread because its meaning
//! is not known: [`response_texts`] lists every object key, string and number of a JSON
//! response body except
//!
//! * what sits at one of the endpoint's event sites (`catalog::EventSite`; judged per event;
//!   an error answer has none: [`error_texts`]),
//! * the values at the given user-data field paths (judged per field and removable; their keys
//!   are still listed).
//!
//! The policy judges the list as a whole (`policy::Policy::response_text`): this text cannot be
//! removed piece by piece (much of it sits in signed objects), so a refusal refuses the whole
//! response. Strings are unescaped, as the receiver reads them; numbers are their JSON text.
use std::collections::HashSet;

use serde_json::value::RawValue;

use super::catalog::{Direction as Part, Endpoint, EventSite, Step};
use super::pdu::{array_elements, for_each_member, str_field};
use super::request_text::{known_name, RequestText, RequestTextError, TextKind};
use super::userdata::{FieldPath, PathSeg};

/// Every key, string and number of the JSON response `body` of `endpoint` outside its event
/// sites and outside the values at `typed`; see the module notes. An empty body has none; a
/// body that is not JSON is an error (callers validate it first; fails closed if not).
pub fn response_texts(
    endpoint: &Endpoint,
    body: &[u8],
    typed: &[&FieldPath],
) -> Result<Vec<RequestText<'static>>, RequestTextError> {
    let sites: Vec<&'static [Step]> = endpoint
        .events(Part::Response)
        .iter()
        .map(|s: &EventSite| s.path)
        .collect();
    texts_of(body, &sites, typed)
}

/// Every key, string and number of an error answer (a JSON object): an error body has no
/// event sites and no user-data fields, so what looks like an event in it is text like the
/// rest (it is not judged per event).
pub fn error_texts(body: &[u8]) -> Result<Vec<RequestText<'static>>, RequestTextError> {
    texts_of(body, &[], &[])
}

fn texts_of(
    body: &[u8],
    sites: &[&'static [Step]],
    typed: &[&FieldPath],
) -> Result<Vec<RequestText<'static>>, RequestTextError> {
    let mut out = Vec::new();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(out);
    }
    let root: &RawValue = serde_json::from_slice(body).map_err(|_| RequestTextError::Body)?;
    let typed: HashSet<&[PathSeg]> = typed.iter().map(|p| p.0.as_slice()).collect();
    let mut walk = Walk {
        typed,
        path: Vec::new(),
        top: None,
        out: &mut out,
    };
    walk.value(root, sites)?;
    Ok(out)
}

struct Walk<'o, 't> {
    typed: HashSet<&'t [PathSeg]>,
    path: Vec<PathSeg>,
    /// The well-known name of the top-level member the walk is under (safe to log).
    top: Option<&'static str>,
    out: &'o mut Vec<RequestText<'static>>,
}

impl Walk<'_, '_> {
    fn push(&mut self, kind: TextKind, text: String) {
        self.out.push(RequestText {
            kind,
            name: self.top.unwrap_or("other"),
            text: text.into(),
        });
    }

    /// `sites`: the remaining steps of every event site that may lie under this value.
    fn value(&mut self, v: &RawValue, sites: &[&'static [Step]]) -> Result<(), RequestTextError> {
        if sites.iter().any(|s| s.is_empty()) {
            // An event: judged per event.
            return Ok(());
        }
        if !self.path.is_empty() && self.typed.contains(self.path.as_slice()) {
            // A user-data field's value: judged per field.
            return Ok(());
        }
        let text = v.get();
        match text.as_bytes().first() {
            Some(b'{') => {
                let mut members = Vec::new();
                for_each_member(v, |k, x| {
                    members.push((k.to_owned(), x));
                    Ok(())
                })
                .map_err(|_| RequestTextError::Body)?;
                for (k, x) in members {
                    let under: Vec<&'static [Step]> = sites
                        .iter()
                        .filter_map(|s| match s.split_first() {
                            Some((Step::Key(name), rest)) if *name == k => Some(rest),
                            _ => None,
                        })
                        .collect();
                    let outer = self.top;
                    if self.path.is_empty() {
                        self.top = Some(known_name(&k));
                    }
                    self.push(TextKind::ResponseKey, k.clone());
                    self.path.push(PathSeg::Key(k));
                    let r = self.value(x, &under);
                    self.path.pop();
                    self.top = outer;
                    r?;
                }
            }
            Some(b'[') => {
                let (elements, _) = array_elements("response", v, usize::MAX)
                    .map_err(|_| RequestTextError::Body)?;
                for (i, x) in elements.into_iter().enumerate() {
                    let under: Vec<&'static [Step]> = sites
                        .iter()
                        .filter_map(|s| match s.split_first() {
                            Some((Step::Each, rest)) => Some(rest),
                            Some((Step::Index(j), rest)) if *j == i => Some(rest),
                            _ => None,
                        })
                        .collect();
                    self.path.push(PathSeg::Index(i));
                    let r = self.value(x, &under);
                    self.path.pop();
                    r?;
                }
            }
            Some(b'"') => {
                let s = str_field("response", v).map_err(|_| RequestTextError::Body)?;
                if !s.is_empty() {
                    self.push(TextKind::ResponseValue, s.into_owned());
                }
            }
            Some(b't' | b'f' | b'n') => {}
            Some(_) => self.push(TextKind::ResponseValue, text.to_owned()),
            None => return Err(RequestTextError::Body),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::catalog;
    use crate::federation::userdata::fields_in;
    use http::Method;

    fn ep(method: Method, path: &str) -> &'static Endpoint {
        catalog::lookup(&method, path).expect("catalogued").endpoint
    }

    fn texts(endpoint: &Endpoint, body: &str) -> Vec<String> {
        let fields = fields_in(endpoint, None, body.as_bytes()).unwrap();
        let paths: Vec<&FieldPath> = fields.iter().map(|f| &f.path).collect();
        response_texts(endpoint, body.as_bytes(), &paths)
            .unwrap()
            .into_iter()
            .map(|t| t.text.into_owned())
            .collect()
    }

    #[test]
    fn key_material_of_a_key_claim_is_listed() {
        let claim = ep(Method::POST, "/_matrix/federation/v1/user/keys/claim");
        let body = r#"{"one_time_keys":{"@a:hs1":{"DEV":{"signed_curve25519:GEHEIM":
            {"key":"Einstufung \u0047EHEIM","signatures":{"@a:hs1":{"ed25519:DEV":"sig"}}}}}}}"#;
        let t = texts(claim, body);
        assert!(t.contains(&"signed_curve25519:GEHEIM".to_owned()), "{t:?}");
        assert!(
            t.contains(&"Einstufung GEHEIM".to_owned()),
            "unescaped: {t:?}"
        );
        assert!(t.contains(&"@a:hs1".to_owned()) && t.contains(&"sig".to_owned()));
    }

    #[test]
    fn typed_profile_values_are_left_to_the_field_judgement_but_their_keys_are_listed() {
        let profile = ep(Method::GET, "/_matrix/federation/v1/query/profile");
        let body = r#"{"displayname":"Alice","org.example.GEHEIM_0600":null,"n":4111111111111111}"#;
        let t = texts(profile, body);
        assert!(!t.contains(&"Alice".to_owned()), "typed value: {t:?}");
        assert!(
            !t.contains(&"4111111111111111".to_owned()),
            "typed value: {t:?}"
        );
        assert!(t.contains(&"displayname".to_owned()));
        assert!(
            t.contains(&"org.example.GEHEIM_0600".to_owned()),
            "null field key"
        );
        // Numbers outside typed fields are listed.
        let claim = ep(Method::POST, "/_matrix/federation/v1/user/keys/claim");
        let t = texts(
            claim,
            r#"{"one_time_keys":{},"n":4111111111111111,"f":1.5}"#,
        );
        assert!(t.contains(&"4111111111111111".to_owned()), "numbers: {t:?}");
        assert!(t.contains(&"1.5".to_owned()), "numbers: {t:?}");
    }

    #[test]
    fn events_are_skipped_but_everything_around_them_is_listed() {
        let state = ep(Method::GET, "/_matrix/federation/v1/state/!r:hs1");
        let body = r#"{"pdus":[{"type":"m.room.message","content":{"body":"in an event"}}],
            "auth_chain":[{"type":"m.room.create","content":{}}],"org.extra":"GEHEIM"}"#;
        let t = texts(state, body);
        assert!(
            !t.iter().any(|s| s == "in an event" || s == "m.room.create"),
            "{t:?}"
        );
        assert!(t.contains(&"org.extra".to_owned()) && t.contains(&"GEHEIM".to_owned()));
    }

    #[test]
    fn directory_entries_list_what_is_not_a_typed_field() {
        let rooms = ep(Method::GET, "/_matrix/federation/v1/publicRooms");
        let body = r#"{"chunk":[{"room_id":"!r:hs1","name":"Lobby","room_type":"GEHEIM",
            "join_rule":"public","num_joined_members":3}],"total_room_count_estimate":1}"#;
        let t = texts(rooms, body);
        assert!(!t.contains(&"Lobby".to_owned()));
        for s in ["room_type", "GEHEIM", "join_rule", "3", "!r:hs1"] {
            assert!(t.contains(&s.to_owned()), "{s} missing: {t:?}");
        }
    }

    #[test]
    fn error_bodies_and_empty_bodies() {
        let profile = ep(Method::GET, "/_matrix/federation/v1/query/profile");
        let t = response_texts(
            profile,
            br#"{"errcode":"M_NOT_FOUND","error":"GEHEIM"}"#,
            &[],
        )
        .unwrap();
        assert!(t.iter().any(|x| x.text == "GEHEIM"));
        assert!(response_texts(profile, b"", &[]).unwrap().is_empty());
        assert!(response_texts(profile, b"{", &[]).is_err());
        // An error answer has no event sites: what sits where a success answer has events is
        // text like the rest.
        let state = ep(Method::GET, "/_matrix/federation/v1/state/!r:hs1");
        let body = br#"{"errcode":"M_FORBIDDEN","pdus":[{"type":"m.room.message","content":{"body":"VS-VERTRAULICH"}}]}"#;
        let t = error_texts(body).unwrap();
        assert!(t.iter().any(|x| x.text == "VS-VERTRAULICH"), "{t:?}");
        let t = response_texts(state, body, &[]).unwrap();
        assert!(!t.iter().any(|x| x.text == "VS-VERTRAULICH"), "{t:?}");
    }

    #[test]
    fn names_are_safe_to_log() {
        let claim = ep(Method::POST, "/_matrix/federation/v1/user/keys/claim");
        let t = response_texts(claim, br#"{"GEHEIM":{"x":"y"}}"#, &[]).unwrap();
        assert!(t.iter().all(|x| x.name == "other"), "{t:?}");
    }
}
