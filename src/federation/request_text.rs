//! Text a request carries outside events: path parameters, query-string parameters and the
//! bodies of requests that carry no events.
//!
//! A room alias in a directory query, a user id in a profile query, a search term in a public
//! rooms search: each is text that leaves one side in the request itself, before any response.
//! [`request_texts`] lists every such piece of text, decoded as the receiving homeserver will
//! read it, so the policy can judge it before the request is forwarded
//! (`policy::Policy::request_text`, called by `policy::decide`).
//!
//! * **Path parameters**: every `{param}` of the catalog template, percent-decoded (no `+`
//!   translation: that is for query strings).
//! * **Query string**: every `name=value` pair (repeated names each on their own), both the name
//!   and the value, form-decoded (`+` is a space, then percent-decoding), as Synapse reads them.
//! * **Bodies**: for endpoints whose request body is JSON and carries no events (public rooms
//!   search, user and key queries, missing-events and key-server queries, third-party binds),
//!   every object key and every string value at every depth. In bodies that carry events the
//!   events (and a transaction's EDUs) are judged per unit and are not listed again; the other
//!   top-level members (a transaction's `origin`, an invite's `room_version`, anything a sender
//!   adds) are listed like a non-event body, and so are the members of each EDU besides
//!   `edu_type` and `content`.
//!
//! Text that does not decode (malformed `%XX` escapes, bytes that are not UTF-8) is an error:
//! the caller refuses the request rather than judge something other than what the receiver
//! reads.
//!
//! [`RequestText::name`] is safe to log: the catalog's name for path parameters, and for query
//! and body texts the parameter or top-level key only if it is one of the well-known federation
//! names ([`KNOWN_NAMES`]), else `other` — the names themselves come from the request and may
//! carry the very text that is refused.
use std::borrow::Cow;

use http::Method;
use serde_json::value::RawValue;
use serde_json::Value;

use super::catalog::{self, Direction as Part, Endpoint, Handler, PercentError, Step};

/// Where a piece of request text sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TextKind {
    /// A path parameter (`{roomId}`, `{mediaId}`, …).
    PathParam,
    /// The name of a query-string parameter.
    QueryName,
    /// The value of a query-string parameter.
    QueryValue,
    /// An object key of a request body.
    BodyKey,
    /// A string value or number of a request body.
    BodyValue,
    /// The name of the peer server: the destination of an outbound request (it crosses in
    /// DNS queries, TLS SNI, `Host` and the X-Matrix destination), the origin of an inbound one.
    Server,
    /// An object key of a response body outside its events and user-data fields
    /// (`federation::response_text`).
    ResponseKey,
    /// A string value or number of a response body outside its events and user-data fields.
    ResponseValue,
}

impl TextKind {
    /// A short name for logs and refusal messages.
    pub fn as_str(self) -> &'static str {
        match self {
            TextKind::PathParam => "path parameter",
            TextKind::QueryName => "query parameter name",
            TextKind::QueryValue => "query parameter",
            TextKind::BodyKey => "body key",
            TextKind::BodyValue => "body value",
            TextKind::Server => "server name",
            TextKind::ResponseKey => "response key",
            TextKind::ResponseValue => "response value",
        }
    }

    /// Whether the text is part of a response (else of a request).
    pub fn in_response(self) -> bool {
        matches!(self, TextKind::ResponseKey | TextKind::ResponseValue)
    }
}

/// One piece of text a request carries, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestText<'a> {
    pub kind: TextKind,
    /// Which parameter or body member (safe to log, see the module notes): the template name of
    /// a path parameter, the query parameter's or the top-level body key's name if well known,
    /// else `other`.
    pub name: &'static str,
    /// The decoded text.
    pub text: Cow<'a, str>,
}

impl RequestText<'_> {
    /// `kind name`, e.g. `query parameter room_alias` (safe to log).
    pub fn label(&self) -> String {
        format!("{} {}", self.kind.as_str(), self.name)
    }

    /// The message of a refusal of this text by `rule` (safe to send: names, no payload).
    pub fn refused_by(&self, rule: &str) -> String {
        let what = if self.kind.in_response() {
            "response"
        } else {
            "request"
        };
        format!("{what} refused: {} refused by rule {rule}", self.label())
    }
}

/// Request text that cannot be read as the receiver would read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestTextError {
    /// The path does not match the endpoint's template (the caller classified another path).
    #[error("request path does not match its endpoint")]
    PathMismatch,
    /// A path parameter does not percent-decode to UTF-8.
    #[error("path parameter {name}: {source}")]
    Path {
        name: &'static str,
        source: PercentError,
    },
    /// A query-string parameter does not percent-decode to UTF-8.
    #[error("query string: {0}")]
    Query(PercentError),
    /// The body is not JSON (callers validate it before; fails closed if not).
    #[error("request body is not JSON")]
    Body,
}

/// Query parameter and top-level body key names of the federation API that may appear in logs.
pub const KNOWN_NAMES: &[&str] = &[
    // query strings
    "access_token",
    "allow_remote",
    "dir",
    "event_id",
    "field",
    "include_all_networks",
    "limit",
    "max_depth",
    "minimum_valid_until_ts",
    "room_alias",
    "since",
    "suggested_only",
    "third_party_instance_id",
    "timeout_ms",
    "ts",
    "user_id",
    "v",
    "ver",
    // bodies
    "address",
    "device_keys",
    "earliest_events",
    "filter",
    "generic_search_term",
    "invites",
    "latest_events",
    "medium",
    "min_depth",
    "mxid",
    "one_time_keys",
    "origin",
    "origin_server_ts",
    "room_types",
    "room_version",
    "server_keys",
];

/// `name` if it is one of [`KNOWN_NAMES`], else `other`.
pub(crate) fn known_name(name: &str) -> &'static str {
    KNOWN_NAMES
        .iter()
        .find(|k| **k == name)
        .copied()
        .unwrap_or("other")
}

/// Every piece of text the request carries outside events; see the module notes.
///
/// `path_and_query` is the request target as received (raw path, optional `?query`), `body`
/// the request body bytes.
pub fn request_texts<'a>(
    endpoint: &'static Endpoint,
    method: &Method,
    path_and_query: &'a str,
    body: &[u8],
) -> Result<Vec<RequestText<'a>>, RequestTextError> {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let m = catalog::lookup(method, path).ok_or(RequestTextError::PathMismatch)?;
    if m.endpoint.id != endpoint.id {
        return Err(RequestTextError::PathMismatch);
    }
    let mut out = Vec::new();
    for (name, raw) in m.params() {
        let text = catalog::percent_decode(raw)
            .map_err(|source| RequestTextError::Path { name, source })?;
        out.push(RequestText {
            kind: TextKind::PathParam,
            name,
            text,
        });
    }
    if let Some(q) = query {
        query_texts(q, &mut out)?;
    }
    if endpoint.request_body.is_json() && !body.is_empty() {
        if !endpoint.carries(Part::Request).has_events() {
            let value: Value = serde_json::from_slice(body).map_err(|_| RequestTextError::Body)?;
            body_texts(&value, None, &mut out);
        } else {
            residue_texts(endpoint, body, &mut out)?;
        }
    }
    Ok(out)
}

/// The top-level members of an event-carrying body that are neither events nor EDUs (judged
/// per unit): a transaction's `origin`, an invite's `room_version`, and any member a sender
/// adds. The events are not parsed here (borrowed raw values), so this stays cheap for large
/// transactions.
fn residue_texts(
    endpoint: &'static Endpoint,
    body: &[u8],
    out: &mut Vec<RequestText<'_>>,
) -> Result<(), RequestTextError> {
    let sites = endpoint.events(Part::Request);
    if sites.iter().any(|s| s.path.is_empty()) {
        // The body is the event.
        return Ok(());
    }
    let members: std::collections::BTreeMap<String, &RawValue> =
        serde_json::from_slice(body).map_err(|_| RequestTextError::Body)?;
    for (k, raw) in members {
        let is_site = sites
            .iter()
            .any(|s| matches!(s.path.first(), Some(Step::Key(f)) if *f == k));
        let is_edus = endpoint.handler == Handler::Transaction && k == "edus";
        if is_site {
            continue;
        }
        if is_edus {
            edu_residue_texts(raw, out)?;
            continue;
        }
        member_texts(k, raw, out)?;
    }
    Ok(())
}

/// A member of a body (key `k`, value `raw`): its key and every key, string and number of its
/// value, named by the key if it is well known.
fn member_texts(
    k: String,
    raw: &RawValue,
    out: &mut Vec<RequestText<'_>>,
) -> Result<(), RequestTextError> {
    let name = known_name(&k);
    let value: Value = serde_json::from_str(raw.get()).map_err(|_| RequestTextError::Body)?;
    out.push(RequestText {
        kind: TextKind::BodyKey,
        name,
        text: Cow::Owned(k),
    });
    body_texts(&value, Some(name), out);
    Ok(())
}

/// The members of each EDU besides `edu_type` and `content` (judged per EDU): a sender may add
/// any, and they cross with the EDU.
fn edu_residue_texts(
    edus: &RawValue,
    out: &mut Vec<RequestText<'_>>,
) -> Result<(), RequestTextError> {
    let edus: Vec<&RawValue> =
        serde_json::from_str(edus.get()).map_err(|_| RequestTextError::Body)?;
    for edu in edus {
        // An EDU that is no object has no view: the transaction view refuses it.
        let Ok(members) =
            serde_json::from_str::<std::collections::BTreeMap<String, &RawValue>>(edu.get())
        else {
            continue;
        };
        for (k, raw) in members {
            if k != "edu_type" && k != "content" {
                member_texts(k, raw, out)?;
            }
        }
    }
    Ok(())
}

/// The pairs of a query string, form-decoded, names and values.
fn query_texts<'a>(query: &'a str, out: &mut Vec<RequestText<'a>>) -> Result<(), RequestTextError> {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = form_decode(k).map_err(RequestTextError::Query)?;
        let value = form_decode(v).map_err(RequestTextError::Query)?;
        let name = known_name(&key);
        if !key.is_empty() {
            out.push(RequestText {
                kind: TextKind::QueryName,
                name,
                text: key,
            });
        }
        if !value.is_empty() {
            out.push(RequestText {
                kind: TextKind::QueryValue,
                name,
                text: value,
            });
        }
    }
    Ok(())
}

/// `application/x-www-form-urlencoded` decoding of one name or value: `+` is a space, then
/// percent-decoding to UTF-8.
pub fn form_decode(raw: &str) -> Result<Cow<'_, str>, PercentError> {
    if !raw.contains('+') {
        return catalog::percent_decode(raw);
    }
    let spaced = raw.replace('+', " ");
    Ok(Cow::Owned(catalog::percent_decode(&spaced)?.into_owned()))
}

/// Every object key, string value and number under `v`; `top` is the top-level key it sits
/// under.
fn body_texts<'a>(v: &Value, top: Option<&'static str>, out: &mut Vec<RequestText<'a>>) {
    match v {
        Value::String(s) => out.push(RequestText {
            kind: TextKind::BodyValue,
            name: top.unwrap_or("other"),
            text: Cow::Owned(s.clone()),
        }),
        Value::Number(n) => out.push(RequestText {
            kind: TextKind::BodyValue,
            name: top.unwrap_or("other"),
            text: Cow::Owned(n.to_string()),
        }),
        Value::Array(a) => a.iter().for_each(|x| body_texts(x, top, out)),
        Value::Object(o) => {
            for (k, x) in o {
                let name = top.unwrap_or_else(|| known_name(k));
                out.push(RequestText {
                    kind: TextKind::BodyKey,
                    name,
                    text: Cow::Owned(k.clone()),
                });
                body_texts(x, Some(name), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(
        method: Method,
        target: &str,
        body: &[u8],
    ) -> Result<Vec<(TextKind, &'static str, String)>, RequestTextError> {
        let path = target.split('?').next().unwrap();
        let ep = catalog::lookup(&method, path).expect("catalogued").endpoint;
        request_texts(ep, &method, target, body).map(|v| {
            v.into_iter()
                .map(|t| (t.kind, t.name, t.text.into_owned()))
                .collect()
        })
    }

    #[test]
    fn directory_query_alias_is_form_decoded() {
        let got = texts(
            Method::GET,
            "/_matrix/federation/v1/query/directory?room_alias=%23GEHEIM%3Ahs2",
            b"",
        )
        .unwrap();
        assert_eq!(
            got,
            [
                (TextKind::QueryName, "room_alias", "room_alias".into()),
                (TextKind::QueryValue, "room_alias", "#GEHEIM:hs2".into())
            ]
        );
        // `+` is a space in a query string; UTF-8 percent-encoding decodes to the characters.
        let got = texts(
            Method::GET,
            "/_matrix/federation/v1/query/directory?room_alias=%23Akte+GEHEIM%3A%C3%BCber.example",
            b"",
        )
        .unwrap();
        assert_eq!(got[1].2, "#Akte GEHEIM:über.example");
        // A literal `+` is sent as `%2B`.
        let got = texts(
            Method::GET,
            "/_matrix/federation/v1/query/directory?room_alias=%23a%2Bb%3Ahs2",
            b"",
        )
        .unwrap();
        assert_eq!(got[1].2, "#a+b:hs2");
    }

    #[test]
    fn path_parameters_are_percent_decoded_without_plus_translation() {
        let got = texts(
            Method::GET,
            "/_matrix/federation/v1/hierarchy/%21GEHEIM%2Bx%3Ahs1",
            b"",
        )
        .unwrap();
        assert_eq!(
            got,
            [(TextKind::PathParam, "roomId", "!GEHEIM+x:hs1".into())]
        );
        let got = texts(
            Method::GET,
            "/_matrix/federation/v1/media/download/Stra%C3%9Fe",
            b"",
        )
        .unwrap();
        assert_eq!(got, [(TextKind::PathParam, "mediaId", "Straße".into())]);
        let got = texts(
            Method::GET,
            "/_matrix/federation/v1/query/profil%65?user_id=%40GEHEIM%3Ahs2&field=displayname",
            b"",
        )
        .unwrap();
        assert_eq!(got[0], (TextKind::PathParam, "queryType", "profile".into()));
        assert!(got.contains(&(TextKind::QueryValue, "user_id", "@GEHEIM:hs2".into())));
        assert!(got.contains(&(TextKind::QueryValue, "field", "displayname".into())));
    }

    #[test]
    fn repeated_and_unknown_query_names_are_each_listed() {
        let got = texts(
            Method::GET,
            "/_matrix/federation/v1/make_join/%21r%3Ahs2/%40a%3Ahs1?ver=10&ver=11&&GEHEIM=x&flag",
            b"",
        )
        .unwrap();
        let q: Vec<_> = got
            .iter()
            .filter(|t| t.0 != TextKind::PathParam)
            .cloned()
            .collect();
        assert_eq!(
            q,
            [
                (TextKind::QueryName, "ver", "ver".into()),
                (TextKind::QueryValue, "ver", "10".into()),
                (TextKind::QueryName, "ver", "ver".into()),
                (TextKind::QueryValue, "ver", "11".into()),
                // A name that is not well known is listed but not named (`other`).
                (TextKind::QueryName, "other", "GEHEIM".into()),
                (TextKind::QueryValue, "other", "x".into()),
                (TextKind::QueryName, "other", "flag".into()),
            ]
        );
    }

    #[test]
    fn malformed_or_non_utf8_encoding_is_an_error() {
        for target in [
            "/_matrix/federation/v1/query/directory?room_alias=%23GEHEIM%3",
            "/_matrix/federation/v1/query/directory?room_alias=%zz",
            "/_matrix/federation/v1/query/directory?room_alias=%FF%FE",
            "/_matrix/federation/v1/query/directory?%C3=x",
        ] {
            assert!(
                matches!(
                    texts(Method::GET, target, b""),
                    Err(RequestTextError::Query(_))
                ),
                "{target}"
            );
        }
        assert!(matches!(
            texts(Method::GET, "/_matrix/federation/v1/hierarchy/%FF", b""),
            Err(RequestTextError::Path {
                name: "roomId",
                source: PercentError::NotUtf8
            })
        ));
        // A path that is not the endpoint's.
        let ep = catalog::by_id("query_profile").unwrap();
        assert_eq!(
            request_texts(
                ep,
                &Method::GET,
                "/_matrix/federation/v1/query/directory",
                b""
            ),
            Err(RequestTextError::PathMismatch)
        );
    }

    #[test]
    fn non_event_bodies_list_every_key_and_string_but_event_bodies_do_not() {
        let body = br#"{"limit":5,"filter":{"generic_search_term":"GEHEIM Akte","room_types":[null,"m.space"]},"include_all_networks":false}"#;
        let got = texts(Method::POST, "/_matrix/federation/v1/publicRooms", body).unwrap();
        assert!(
            got.contains(&(TextKind::BodyValue, "filter", "GEHEIM Akte".into())),
            "{got:?}"
        );
        assert!(got.contains(&(TextKind::BodyKey, "filter", "generic_search_term".into())));
        assert!(got.contains(&(TextKind::BodyValue, "filter", "m.space".into())));
        // Numbers too: a number can carry digits a rule looks for.
        assert!(got.contains(&(TextKind::BodyValue, "limit", "5".into())));
        assert!(got.contains(&(
            TextKind::BodyKey,
            "include_all_networks",
            "include_all_networks".into()
        )));
        // Keys that are user ids: listed, named by their top-level key only.
        let got = texts(
            Method::POST,
            "/_matrix/federation/v1/user/keys/query",
            br#"{"device_keys":{"@GEHEIM:hs2":["DEV"]}}"#,
        )
        .unwrap();
        assert!(got.contains(&(TextKind::BodyKey, "device_keys", "@GEHEIM:hs2".into())));
        assert!(got.contains(&(TextKind::BodyValue, "device_keys", "DEV".into())));
        // Transactions carry events: judged per unit (PDUs, EDUs), not listed here; the rest of
        // the body is.
        let txn = br#"{"origin":"x","origin_server_ts":1,"pdus":[{"content":{"body":"GEHEIM"}}],"edus":[{"edu_type":"GEHEIM"}],"note":{"k":"VS-NfD"}}"#;
        let got = texts(Method::PUT, "/_matrix/federation/v1/send/t1", txn).unwrap();
        assert_eq!(
            got,
            [
                (TextKind::PathParam, "txnId", "t1".into()),
                (TextKind::BodyKey, "other", "note".into()),
                (TextKind::BodyKey, "other", "k".into()),
                (TextKind::BodyValue, "other", "VS-NfD".into()),
                (TextKind::BodyKey, "origin", "origin".into()),
                (TextKind::BodyValue, "origin", "x".into()),
                (
                    TextKind::BodyKey,
                    "origin_server_ts",
                    "origin_server_ts".into()
                ),
                (TextKind::BodyValue, "origin_server_ts", "1".into()),
            ]
        );
        // Members of an EDU besides `edu_type` and `content` cross with it: listed. An EDU that
        // is no object is left to the transaction view.
        let txn = br#"{"origin":"x","origin_server_ts":1,"edus":[{"edu_type":"m.typing","content":{"typing":true},"x_note":{"k":"GEHEIM"}},7]}"#;
        let got = texts(Method::PUT, "/_matrix/federation/v1/send/t1", txn).unwrap();
        assert_eq!(
            got[1..4],
            [
                (TextKind::BodyKey, "other", "x_note".into()),
                (TextKind::BodyKey, "other", "k".into()),
                (TextKind::BodyValue, "other", "GEHEIM".into()),
            ]
        );
        assert!(!got.iter().any(|t| t.2 == "m.typing" || t.2 == "typing"));
        // A body that is the event: nothing besides the path.
        let got = texts(
            Method::PUT,
            "/_matrix/federation/v2/send_join/%21r%3Ahs/%24e",
            br#"{"type":"m.room.member","content":{"displayname":"GEHEIM"}}"#,
        )
        .unwrap();
        assert!(got.iter().all(|t| t.0 == TextKind::PathParam), "{got:?}");
        // An invite: the event and the stripped state are judged per event, `room_version` here.
        let invite = br#"{"event":{"content":{"x":"GEHEIM"}},"invite_room_state":[{"content":{"name":"GEHEIM"}}],"room_version":"10"}"#;
        let got = texts(
            Method::PUT,
            "/_matrix/federation/v2/invite/%21r%3Ahs/%24e",
            invite,
        )
        .unwrap();
        let body: Vec<_> = got
            .into_iter()
            .filter(|t| t.0 != TextKind::PathParam)
            .collect();
        assert_eq!(
            body,
            [
                (TextKind::BodyKey, "room_version", "room_version".into()),
                (TextKind::BodyValue, "room_version", "10".into())
            ]
        );
        assert_eq!(
            texts(Method::POST, "/_matrix/federation/v1/publicRooms", b"{nope"),
            Err(RequestTextError::Body)
        );
    }
}
