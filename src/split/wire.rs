//! What a request and a response look like inside a diode frame's payload, and the one
//! canonical encoding of a JSON value that the frame format allows (`hw/FRAMES.md`).
//!
//! # Messages
//!
//! Keys in byte order, as the frame format requires; every key is present exactly when its
//! condition holds, so a message has one encoding:
//!
//! * request (frame type `01`): `{"auth":…,"body":…,"destination":…,"id":…,"method":…,"path":…}`
//!   — `auth` (the `Authorization` header) only if the request had one, `body` (the JSON body
//!   as a value) only if it had a body;
//! * response (frame type `02`): `{"body":…,"id":…,"status":…}` — `body` only if non-empty;
//! * heartbeat (frame type `03`): `{"half":"high"|"low","pending":N}`.
//!
//! `id` is the requesting half's number for the exchange (it matches a response to its
//! request); the receiving half answers with the same `id`.
//!
//! # Conformance
//!
//! [`encode_value`] writes a JSON value in the frame's canonical form, or says why it cannot:
//! a string or key with a character outside `hw/charclass.txt` (controls, decomposed accents,
//! combining marks), a key with `"` or `\` or over 255 bytes, a number that is not an integer
//! of magnitude ≤ 2^53 − 1, nesting beyond the frame's depth. Events are never changed to fit:
//! the sending half's policy redacts an event that does not conform before it is framed
//! ([`crate::policy::frame`]); what is still not conformant is not sent.
use serde_json::Value;

use crate::diode::charclass;
use crate::diode::frame::{MAX_DEPTH, MAX_INT, MAX_KEY};

/// Why a value has no frame encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NonConforming {
    #[error("a string holds a character frames do not carry (U+{0:04X})")]
    Character(u32),
    #[error("an object key holds `\"` or `\\`")]
    KeyEscape,
    #[error("an object key is longer than {MAX_KEY} bytes")]
    KeyLength,
    #[error("a number is not an integer of magnitude at most 2^53 - 1")]
    Number,
    #[error("nesting deeper than frames carry")]
    Depth,
    #[error("not JSON")]
    NotJson,
    #[error("a message field is missing or has the wrong type: {0}")]
    Field(&'static str),
    /// The message decodes but is not in its one encoding (other spacing, member order,
    /// escapes, number forms or a duplicate member): a second spelling would be a covert
    /// channel.
    #[error("the message is not in its canonical encoding")]
    NotCanonical,
}

/// Depth a unit (an event, an EDU) may use inside a message: the frame allows 32 levels, and
/// a message wraps a unit in at most 4 (message, body, array, unit).
pub const UNIT_DEPTH: usize = MAX_DEPTH - 4;

/// Writes `v` in the frame's canonical form; `depth` is the number of containers already open
/// around it.
pub fn encode_value(v: &Value, depth: usize, out: &mut Vec<u8>) -> Result<(), NonConforming> {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            let ok = match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => i.unsigned_abs() <= MAX_INT,
                (None, Some(u)) => u <= MAX_INT,
                _ => false,
            };
            if !ok {
                return Err(NonConforming::Number);
            }
            out.extend_from_slice(n.to_string().as_bytes());
        }
        Value::String(s) => encode_str(s, out)?,
        Value::Array(a) => {
            if depth + 1 > MAX_DEPTH {
                return Err(NonConforming::Depth);
            }
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                encode_value(x, depth + 1, out)?;
            }
            out.push(b']');
        }
        Value::Object(m) => {
            if depth + 1 > MAX_DEPTH {
                return Err(NonConforming::Depth);
            }
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                if k.len() > MAX_KEY {
                    return Err(NonConforming::KeyLength);
                }
                if k.contains(['"', '\\']) {
                    return Err(NonConforming::KeyEscape);
                }
                encode_str(k, out)?;
                out.push(b':');
                encode_value(&m[k.as_str()], depth + 1, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn encode_str(s: &str, out: &mut Vec<u8>) -> Result<(), NonConforming> {
    out.push(b'"');
    for c in s.chars() {
        let cp = c as u32;
        // Printable ASCII is allowed (pinned by the charclass tests); the table for the rest.
        if !((0x20..0x7f).contains(&cp) || charclass::allowed(cp)) {
            return Err(NonConforming::Character(cp));
        }
        if c == '"' || c == '\\' {
            out.push(b'\\');
        }
        let mut buf = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }
    out.push(b'"');
    Ok(())
}

/// Whether the raw JSON of one unit (an event, an EDU, a field) can be framed as it is.
pub fn conforms(raw: &str) -> Result<(), NonConforming> {
    let v: Value = serde_json::from_str(raw).map_err(|_| NonConforming::NotJson)?;
    let mut sink = Vec::with_capacity(raw.len());
    encode_value(&v, MAX_DEPTH - UNIT_DEPTH, &mut sink)
}

/// The one form of an `Authorization` header that crosses: an X-Matrix header rendered from
/// its parsed parameters (`origin`, `destination`, `key`, `sig`, in that order, quoted).
/// Unknown parameters, other spellings and other schemes have no frame encoding: text in them
/// would cross unjudged, and two spellings of one header would be a covert channel.
pub fn canonical_auth(header: &str) -> Result<String, NonConforming> {
    crate::federation::xmatrix::XMatrix::parse(header)
        .map(|x| x.to_header_value())
        .map_err(|_| NonConforming::Field("auth"))
}

/// A request crossing to the other half.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: u64,
    pub method: String,
    /// Path and query, as forwarded.
    pub path: String,
    /// The Matrix destination server name.
    pub destination: String,
    /// The `Authorization` header.
    pub auth: Option<String>,
    /// The JSON body.
    pub body: Option<Value>,
}

/// A response crossing back.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub id: u64,
    pub status: u16,
    pub body: Option<Value>,
}

/// A heartbeat: which half sends it and how many of its requests wait for an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub half: String,
    pub pending: u64,
}

/// The JSON body of an HTTP message as a frame value: empty is none; anything else must be
/// JSON.
pub fn body_value(bytes: &[u8]) -> Result<Option<Value>, NonConforming> {
    if bytes.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(bytes)
        .map(Some)
        .map_err(|_| NonConforming::NotJson)
}

/// The bytes of a body carried in a frame (its canonical encoding).
pub fn body_bytes(v: &Value) -> Result<Vec<u8>, NonConforming> {
    let mut out = Vec::new();
    encode_value(v, 1, &mut out)?;
    Ok(out)
}

fn obj(members: Vec<(&str, Value)>) -> Value {
    Value::Object(
        members
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

fn encode_message(v: &Value) -> Result<Vec<u8>, NonConforming> {
    let mut out = Vec::new();
    encode_value(v, 0, &mut out)?;
    Ok(out)
}

impl Request {
    /// The frame payload.
    pub fn encode(&self) -> Result<Vec<u8>, NonConforming> {
        let mut m = vec![
            ("destination", Value::from(self.destination.clone())),
            ("id", Value::from(self.id)),
            ("method", Value::from(self.method.clone())),
            ("path", Value::from(self.path.clone())),
        ];
        if let Some(a) = &self.auth {
            m.push(("auth", Value::from(a.clone())));
        }
        if let Some(b) = &self.body {
            m.push(("body", b.clone()));
        }
        encode_message(&obj(m))
    }

    /// Reads a verified payload.
    pub fn decode(payload: &[u8]) -> Result<Request, NonConforming> {
        let mut v: Value = serde_json::from_slice(payload).map_err(|_| NonConforming::NotJson)?;
        let m = v.as_object_mut().ok_or(NonConforming::Field("message"))?;
        let r = Request {
            id: take_u64(m, "id")?,
            method: take_str(m, "method")?,
            path: take_str(m, "path")?,
            destination: take_str(m, "destination")?,
            auth: match m.remove("auth") {
                None => None,
                Some(Value::String(s)) if canonical_auth(&s).as_deref() == Ok(s.as_str()) => {
                    Some(s)
                }
                Some(_) => return Err(NonConforming::Field("auth")),
            },
            body: m.remove("body"),
        };
        if !m.is_empty() {
            return Err(NonConforming::Field("unknown member"));
        }
        only_encoding(payload, r.encode())?;
        Ok(r)
    }
}

/// A decoded message must re-encode to exactly the bytes it came from.
fn only_encoding(
    payload: &[u8],
    encoded: Result<Vec<u8>, NonConforming>,
) -> Result<(), NonConforming> {
    match encoded {
        Ok(bytes) if bytes == payload => Ok(()),
        Ok(_) => Err(NonConforming::NotCanonical),
        Err(e) => Err(e),
    }
}

impl Response {
    /// The frame payload.
    pub fn encode(&self) -> Result<Vec<u8>, NonConforming> {
        let mut m = vec![
            ("id", Value::from(self.id)),
            ("status", Value::from(self.status)),
        ];
        if let Some(b) = &self.body {
            m.push(("body", b.clone()));
        }
        encode_message(&obj(m))
    }

    /// Reads a verified payload.
    pub fn decode(payload: &[u8]) -> Result<Response, NonConforming> {
        let mut v: Value = serde_json::from_slice(payload).map_err(|_| NonConforming::NotJson)?;
        let m = v.as_object_mut().ok_or(NonConforming::Field("message"))?;
        let status = take_u64(m, "status")?;
        let r = Response {
            id: take_u64(m, "id")?,
            status: u16::try_from(status)
                .ok()
                .filter(|s| (100..600).contains(s))
                .ok_or(NonConforming::Field("status"))?,
            body: m.remove("body"),
        };
        if !m.is_empty() {
            return Err(NonConforming::Field("unknown member"));
        }
        only_encoding(payload, r.encode())?;
        Ok(r)
    }
}

impl Heartbeat {
    /// The frame payload.
    pub fn encode(&self) -> Result<Vec<u8>, NonConforming> {
        encode_message(&obj(vec![
            ("half", Value::from(self.half.clone())),
            ("pending", Value::from(self.pending)),
        ]))
    }

    /// Reads a verified payload.
    pub fn decode(payload: &[u8]) -> Result<Heartbeat, NonConforming> {
        let mut v: Value = serde_json::from_slice(payload).map_err(|_| NonConforming::NotJson)?;
        let m = v.as_object_mut().ok_or(NonConforming::Field("message"))?;
        let h = Heartbeat {
            half: take_str(m, "half")?,
            pending: take_u64(m, "pending")?,
        };
        if !m.is_empty() {
            return Err(NonConforming::Field("unknown member"));
        }
        only_encoding(payload, h.encode())?;
        Ok(h)
    }
}

fn take_u64(m: &mut serde_json::Map<String, Value>, k: &'static str) -> Result<u64, NonConforming> {
    m.remove(k)
        .and_then(|v| v.as_u64())
        .ok_or(NonConforming::Field(k))
}

fn take_str(
    m: &mut serde_json::Map<String, Value>,
    k: &'static str,
) -> Result<String, NonConforming> {
    match m.remove(k) {
        Some(Value::String(s)) => Ok(s),
        _ => Err(NonConforming::Field(k)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diode::frame::{self, FrameType, Header, Reason};
    use serde_json::json;

    fn framed(payload: &[u8]) -> Reason {
        frame::verify(&frame::encode(
            &Header {
                frame_type: FrameType::Request,
                session: 7,
                sequence: 1,
            },
            payload,
        ))
    }

    /// A real X-Matrix header, in its canonical form.
    fn signed_header() -> String {
        let key = crate::keys::SigningKey::generate("k1").unwrap();
        crate::federation::xmatrix::sign_request(&key, "a.example", "b.example", "GET", "/p", None)
            .unwrap()
    }

    #[test]
    fn request_round_trips_and_verifies() {
        let r = Request {
            id: 42,
            method: "PUT".into(),
            path: "/_matrix/federation/v1/send/1?x=%22".into(),
            destination: "127.0.0.1:8448".into(),
            auth: Some(signed_header()),
            body: Some(
                json!({"pdus": [{"content": {"body": "grüße \"quoted\" \\ back", "n": -5}}], "edus": []}),
            ),
        };
        let p = r.encode().unwrap();
        assert_eq!(
            framed(&p),
            Reason::Accept,
            "{}",
            String::from_utf8_lossy(&p)
        );
        assert_eq!(Request::decode(&p).unwrap(), r);
        // The body bytes are the canonical encoding: keys sorted, no whitespace.
        let b = body_bytes(r.body.as_ref().unwrap()).unwrap();
        assert_eq!(
            String::from_utf8(b).unwrap(),
            r#"{"edus":[],"pdus":[{"content":{"body":"grüße \"quoted\" \\ back","n":-5}}]}"#
        );
    }

    #[test]
    fn response_and_heartbeat_verify() {
        for p in [
            Response {
                id: 1,
                status: 200,
                body: Some(json!([200, {"a": null, "b": [true, false]}])),
            }
            .encode()
            .unwrap(),
            Response {
                id: 2,
                status: 404,
                body: None,
            }
            .encode()
            .unwrap(),
            Heartbeat {
                half: "low".into(),
                pending: 3,
            }
            .encode()
            .unwrap(),
        ] {
            assert_eq!(
                framed(&p),
                Reason::Accept,
                "{}",
                String::from_utf8_lossy(&p)
            );
        }
        let r = Response {
            id: 9,
            status: 502,
            body: Some(json!({"errcode": "M_UNKNOWN"})),
        };
        assert_eq!(Response::decode(&r.encode().unwrap()).unwrap(), r);
    }

    #[test]
    fn what_does_not_conform_is_refused_not_rewritten() {
        let cases = [
            (r#"{"body":"line\nbreak"}"#, NonConforming::Character(0x0a)),
            (r#"{"body":"tab\there"}"#, NonConforming::Character(0x09)),
            (r#"{"body":"e\u0301"}"#, NonConforming::Character(0x301)),
            (r#"{"body":"\u0000"}"#, NonConforming::Character(0)),
            (r#"{"body":"\u0085"}"#, NonConforming::Character(0x85)),
            (r#"{"n":1.5}"#, NonConforming::Number),
            (r#"{"n":9007199254740992}"#, NonConforming::Number),
            (r#"{"n":-9007199254740992}"#, NonConforming::Number),
            (r#"{"n":1e3}"#, NonConforming::Number),
            (r#"{"a\"b":1}"#, NonConforming::KeyEscape),
            (r#"{"a\\b":1}"#, NonConforming::KeyEscape),
            ("not json", NonConforming::NotJson),
        ];
        for (raw, want) in cases {
            assert_eq!(conforms(raw), Err(want), "{raw}");
        }
        let long_key = format!(r#"{{"{}":1}}"#, "k".repeat(256));
        assert_eq!(conforms(&long_key), Err(NonConforming::KeyLength));
        let deep = format!(
            "{}{}",
            "[".repeat(UNIT_DEPTH + 1),
            "]".repeat(UNIT_DEPTH + 1)
        );
        assert_eq!(conforms(&deep), Err(NonConforming::Depth));
        let ok_deep = format!("{}{}", "[".repeat(UNIT_DEPTH), "]".repeat(UNIT_DEPTH));
        assert_eq!(conforms(&ok_deep), Ok(()));
        // Precomposed text, ASCII punctuation, astral characters are fine.
        assert_eq!(conforms(r#"{"body":"é ü 😀 <b>&amp;</b> ~"}"#), Ok(()));
        assert_eq!(conforms(r#"{"n":-9007199254740991}"#), Ok(()));
    }

    #[test]
    fn a_unit_that_conforms_stays_valid_inside_a_message() {
        // The deepest conforming unit, wrapped as a transaction PDU, still verifies.
        let unit = format!("{}{}", "[".repeat(UNIT_DEPTH), "]".repeat(UNIT_DEPTH));
        assert_eq!(conforms(&unit), Ok(()));
        let v: Value = serde_json::from_str(&unit).unwrap();
        let r = Request {
            id: 1,
            method: "PUT".into(),
            path: "/p".into(),
            destination: "d".into(),
            auth: None,
            body: Some(json!({ "pdus": [v] })),
        };
        assert_eq!(framed(&r.encode().unwrap()), Reason::Accept);
    }

    /// Found by the `split_message` fuzz target: a heartbeat with a newline between its
    /// members decoded. Every message has exactly one encoding.
    #[test]
    fn a_message_in_any_other_spelling_is_refused() {
        let hb = Heartbeat {
            half: "high".into(),
            pending: 3,
        };
        let canonical = hb.encode().unwrap();
        assert_eq!(Heartbeat::decode(&canonical).unwrap(), hb);
        for other in [
            &b"{\"half\":\"high\",\n\"pending\":3}"[..],
            b"{\"half\":\"high\", \"pending\":3}",
            b"{\"pending\":3,\"half\":\"high\"}",
            b"{\"half\":\"high\",\"pending\":3,\"pending\":3}",
            b"{\"half\":\"hig\\u0068\",\"pending\":3}",
            b"{\"half\":\"high\",\"pending\":3.0}",
        ] {
            assert!(
                Heartbeat::decode(other).is_err(),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
        let r = Response {
            id: 1,
            status: 200,
            body: Some(serde_json::json!({"a": 1})),
        };
        let bytes = r.encode().unwrap();
        let spaced = String::from_utf8(bytes.clone()).unwrap().replace(':', ": ");
        assert_eq!(Response::decode(&bytes).unwrap(), r);
        assert_eq!(
            Response::decode(spaced.as_bytes()),
            Err(NonConforming::NotCanonical)
        );
    }

    #[test]
    fn only_the_canonical_x_matrix_header_crosses() {
        let canonical = signed_header();
        assert_eq!(canonical_auth(&canonical).unwrap(), canonical);
        // Text in an unknown parameter, another parameter order or spacing: the canonical form
        // carries none of it.
        let (head, sig) = canonical.split_once(",sig=").unwrap();
        for variant in [
            format!("{head},sig={sig},note=\"GEHEIM Lagebericht\""),
            format!("{head},x-marker=GEHEIM,sig={sig}"),
            format!("{},sig={sig}", head.replace(",key=", " , key=")),
        ] {
            assert_ne!(variant, canonical);
            assert_eq!(canonical_auth(&variant).unwrap(), canonical, "{variant}");
            // A frame carrying the variant is refused by the receiving half.
            let payload = format!(
                r#"{{"auth":{},"destination":"d","id":1,"method":"GET","path":"/"}}"#,
                serde_json::to_string(&variant).unwrap()
            );
            assert!(Request::decode(payload.as_bytes()).is_err(), "{variant}");
        }
        assert!(canonical_auth("Bearer GEHEIM").is_err());
        let ok = format!(
            r#"{{"auth":{},"destination":"d","id":1,"method":"GET","path":"/"}}"#,
            serde_json::to_string(&canonical).unwrap()
        );
        assert_eq!(
            Request::decode(ok.as_bytes()).unwrap().auth,
            Some(canonical)
        );
    }

    #[test]
    fn decode_refuses_unknown_members_and_wrong_types() {
        assert!(Request::decode(
            br#"{"destination":"d","extra":1,"id":1,"method":"GET","path":"/"}"#
        )
        .is_err());
        assert!(
            Request::decode(br#"{"destination":"d","id":"1","method":"GET","path":"/"}"#).is_err()
        );
        assert!(Response::decode(br#"{"id":1,"status":99}"#).is_err());
        assert!(Response::decode(br#"{"id":1,"status":700}"#).is_err());
        assert!(Heartbeat::decode(br#"{"half":"low"}"#).is_err());
    }
}
