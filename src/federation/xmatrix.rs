//! The X-Matrix `Authorization` scheme: parse, render, sign, verify.
//!
//! # Design notes
//!
//! * Grammar accepted (RFC 7235 credentials, as the spec asks): `X-Matrix` (case-insensitive)
//!   then whitespace, then `name=value` pairs separated by commas; names case-insensitive, any
//!   order, optional whitespace around `=` and `,`; values are tokens (any visible ASCII but
//!   `,` `"` `\`: old senders put `origin=host:port` unquoted) or quoted strings with backslash
//!   escapes. Unknown parameters are ignored, as Synapse and ruma do.
//! * Stricter than Synapse where a difference could be abused: a **repeated** `origin`,
//!   `destination`, `key` or `sig` is an error (Synapse keeps the last one — a guard that kept
//!   the first would judge a different origin than the homeserver authenticates), empty list
//!   elements and a second credential in the same header are errors, and `origin`/`destination`
//!   must be valid server names, `key` a valid `ed25519:`-style key ID and `sig` base64. The
//!   proxy must also refuse requests carrying more than one `Authorization` header: Synapse
//!   merges the signatures of all of them.
//! * Signing and verification use ruma: the signed object is canonical JSON of
//!   `{method, uri, origin, destination, content?}` (`content` only when there is a body), the
//!   signature ed25519 over it, base64 without padding. `uri` is the path and query exactly as
//!   sent on the wire. A body that is not strict canonical JSON (a float, an integer beyond
//!   ±(2^53 − 1), `-0` — legal in a request body, judged per PDU by the room version rules) is
//!   signed and verified in the form Synapse uses ([`crate::federation::pycanonical`]).
use std::fmt;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;
use ruma::{
    signatures::{to_canonical_json_string_for_signing, verify_canonical_json_bytes},
    CanonicalJsonObject, CanonicalJsonValue, OwnedServerName, OwnedServerSigningKeyId,
    SigningKeyAlgorithm,
};
use serde_json::value::RawValue;

/// A parsed X-Matrix credential.
#[derive(Clone, PartialEq, Eq)]
pub struct XMatrix {
    /// Sending server.
    pub origin: OwnedServerName,
    /// Receiving server (old senders omit it).
    pub destination: Option<OwnedServerName>,
    /// Key ID (`ed25519:…`).
    pub key: OwnedServerSigningKeyId,
    /// The ed25519 signature bytes.
    pub sig: Vec<u8>,
}

impl fmt::Debug for XMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XMatrix")
            .field("origin", &self.origin)
            .field("destination", &self.destination)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// X-Matrix errors (parse, sign, verify).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XMatrixError {
    /// The scheme is not X-Matrix.
    #[error("authorization scheme is not X-Matrix")]
    NotXMatrix,
    /// The header is not well-formed.
    #[error("malformed X-Matrix header at byte {at}")]
    Syntax {
        /// Byte offset of the problem.
        at: usize,
    },
    /// A required parameter is absent.
    #[error("X-Matrix parameter `{0}` is missing")]
    Missing(&'static str),
    /// A known parameter appears twice.
    #[error("X-Matrix parameter `{0}` appears more than once")]
    Duplicate(&'static str),
    /// A parameter value is invalid.
    #[error("X-Matrix parameter `{0}` has an invalid value")]
    Invalid(&'static str),
    /// Verification needs a destination but the header has none and none was given.
    #[error("X-Matrix header has no destination")]
    MissingDestination,
    /// The header's destination is not the server the request was sent to.
    #[error("X-Matrix destination does not match")]
    DestinationMismatch,
    /// The signing key algorithm is not ed25519.
    #[error("unsupported signing key algorithm")]
    UnsupportedAlgorithm,
    /// The body cannot be turned into canonical JSON (not JSON, a float out of range).
    #[error("request content is not canonical-JSON compatible")]
    Content,
    /// The signature does not verify.
    #[error("X-Matrix signature does not verify")]
    BadSignature,
}

impl XMatrixError {
    /// The Matrix error code for refusing a request with this error (401 in all cases).
    pub fn errcode(&self) -> &'static str {
        "M_UNAUTHORIZED"
    }
}

const SCHEME: &str = "X-Matrix";

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Unquoted value byte: visible ASCII except `,`, `"`, `\`.
fn is_value_char(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && !matches!(b, b',' | b'"' | b'\\')
}

impl XMatrix {
    /// Parses an `Authorization` header value.
    pub fn parse(header: &str) -> Result<Self, XMatrixError> {
        let b = header.as_bytes();
        let mut i = 0;
        while i < b.len() && is_ws(b[i]) {
            i += 1;
        }
        let scheme_start = i;
        while i < b.len() && is_tchar(b[i]) {
            i += 1;
        }
        if !header[scheme_start..i].eq_ignore_ascii_case(SCHEME) {
            return Err(XMatrixError::NotXMatrix);
        }
        if i >= b.len() || !is_ws(b[i]) {
            return Err(XMatrixError::Syntax { at: i });
        }

        let (mut origin, mut destination, mut key, mut sig) = (None, None, None, None);
        loop {
            while i < b.len() && is_ws(b[i]) {
                i += 1;
            }
            // name
            let name_start = i;
            while i < b.len() && is_tchar(b[i]) {
                i += 1;
            }
            if i == name_start {
                return Err(XMatrixError::Syntax { at: i });
            }
            let name = &header[name_start..i];
            while i < b.len() && is_ws(b[i]) {
                i += 1;
            }
            if i >= b.len() || b[i] != b'=' {
                return Err(XMatrixError::Syntax { at: i });
            }
            i += 1;
            while i < b.len() && is_ws(b[i]) {
                i += 1;
            }
            // value
            let value: String = if i < b.len() && b[i] == b'"' {
                i += 1;
                let mut v = Vec::new();
                loop {
                    match b.get(i) {
                        None => return Err(XMatrixError::Syntax { at: i }),
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') => {
                            match b.get(i + 1) {
                                Some(&c) if c == b'\t' || (0x20..=0x7e).contains(&c) => v.push(c),
                                _ => return Err(XMatrixError::Syntax { at: i + 1 }),
                            }
                            i += 2;
                        }
                        Some(&c) if c == b'\t' || (0x20..=0x7e).contains(&c) => {
                            v.push(c);
                            i += 1;
                        }
                        Some(_) => return Err(XMatrixError::Syntax { at: i }),
                    }
                }
                String::from_utf8(v).map_err(|_| XMatrixError::Syntax { at: i })?
            } else {
                let start = i;
                while i < b.len() && is_value_char(b[i]) {
                    i += 1;
                }
                if i == start {
                    return Err(XMatrixError::Syntax { at: i });
                }
                header[start..i].to_owned()
            };

            let slot = if name.eq_ignore_ascii_case("origin") {
                Some((&mut origin, "origin"))
            } else if name.eq_ignore_ascii_case("destination") {
                Some((&mut destination, "destination"))
            } else if name.eq_ignore_ascii_case("key") {
                Some((&mut key, "key"))
            } else if name.eq_ignore_ascii_case("sig") {
                Some((&mut sig, "sig"))
            } else {
                None // unknown parameter: ignored
            };
            if let Some((slot, pname)) = slot {
                if slot.replace(value).is_some() {
                    return Err(XMatrixError::Duplicate(pname));
                }
            }

            while i < b.len() && is_ws(b[i]) {
                i += 1;
            }
            if i == b.len() {
                break;
            }
            if b[i] != b',' {
                return Err(XMatrixError::Syntax { at: i });
            }
            i += 1;
        }

        let origin = origin.ok_or(XMatrixError::Missing("origin"))?;
        let key = key.ok_or(XMatrixError::Missing("key"))?;
        let sig = sig.ok_or(XMatrixError::Missing("sig"))?;
        Ok(Self {
            origin: OwnedServerName::try_from(origin)
                .map_err(|_| XMatrixError::Invalid("origin"))?,
            destination: destination
                .map(OwnedServerName::try_from)
                .transpose()
                .map_err(|_| XMatrixError::Invalid("destination"))?,
            key: OwnedServerSigningKeyId::try_from(key)
                .map_err(|_| XMatrixError::Invalid("key"))?,
            sig: decode_sig(&sig).ok_or(XMatrixError::Invalid("sig"))?,
        })
    }

    /// Renders the header value: `X-Matrix origin="…",destination="…",key="…",sig="…"`.
    pub fn to_header_value(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for XMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME} origin=")?;
        quoted(f, self.origin.as_str())?;
        if let Some(d) = &self.destination {
            f.write_str(",destination=")?;
            quoted(f, d.as_str())?;
        }
        f.write_str(",key=")?;
        quoted(f, self.key.as_str())?;
        f.write_str(",sig=")?;
        quoted(f, &STANDARD_NO_PAD.encode(&self.sig))
    }
}

fn quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        if c == '"' || c == '\\' {
            f.write_str("\\")?;
        }
        write!(f, "{c}")?;
    }
    f.write_str("\"")
}

fn decode_sig(s: &str) -> Option<Vec<u8>> {
    if s.ends_with('=') {
        STANDARD.decode(s).ok()
    } else {
        STANDARD_NO_PAD.decode(s).ok()
    }
}

/// Canonical JSON bytes of the signed request object.
fn signing_bytes(
    method: &str,
    uri: &str,
    origin: &str,
    destination: &str,
    content: Option<&RawValue>,
) -> Result<String, XMatrixError> {
    // Bodies that already are canonical JSON (Synapse sends them so) are used as they are,
    // without a parse and re-serialisation of a possibly large transaction.
    let content = content.map(content_form).transpose()?;
    signing_bytes_canonical(method, uri, origin, destination, content.as_deref())
}

/// The canonical form of a request body as Synapse signs and verifies it: the strict form when
/// the body has one, else Synapse's encoding of it
/// ([`crate::federation::pycanonical`]: floats and big integers are legal in a request body;
/// the room version rules judge them per PDU).
fn content_form(raw: &RawValue) -> Result<std::borrow::Cow<'_, str>, XMatrixError> {
    match crate::federation::canonical::canonical_form(raw) {
        Ok(c) => Ok(c),
        Err(crate::federation::canonical::CanonicalError::NotJson) => Err(XMatrixError::Content),
        Err(_) => crate::federation::pycanonical::encode(raw.get())
            .map(std::borrow::Cow::Owned)
            .map_err(|_| XMatrixError::Content),
    }
}

/// [`signing_bytes`] with `content` already in canonical form.
fn signing_bytes_canonical(
    method: &str,
    uri: &str,
    origin: &str,
    destination: &str,
    content: Option<&str>,
) -> Result<String, XMatrixError> {
    let mut obj = CanonicalJsonObject::new();
    obj.insert(
        "method".into(),
        CanonicalJsonValue::String(method.to_owned()),
    );
    obj.insert("uri".into(), CanonicalJsonValue::String(uri.to_owned()));
    obj.insert(
        "origin".into(),
        CanonicalJsonValue::String(origin.to_owned()),
    );
    obj.insert(
        "destination".into(),
        CanonicalJsonValue::String(destination.to_owned()),
    );
    let head = to_canonical_json_string_for_signing(&obj).map_err(|_| XMatrixError::Content)?;
    let Some(content) = content else {
        return Ok(head);
    };
    // `content` sorts before every other key, so the canonical object is `{"content":…,` followed
    // by the rest.
    let rest = head.strip_prefix('{').ok_or(XMatrixError::Content)?;
    let mut out = String::with_capacity(content.len() + head.len() + 12);
    out.push_str("{\"content\":");
    out.push_str(content);
    out.push(',');
    out.push_str(rest);
    Ok(out)
}

/// An ed25519 signing key as X-Matrix needs it (implemented by `keys::SigningKey`; the
/// federation layer does not depend on where keys come from).
pub trait Signer {
    /// `ed25519:<version>`.
    fn key_id(&self) -> String;
    /// The signature over `message`.
    fn sign(&self, message: &[u8]) -> [u8; 64];
}

/// Signs a request as `origin` and returns the `Authorization` header value.
///
/// `uri` is the path and query exactly as they will be sent; `content` the JSON body, if any.
pub fn sign_request(
    key: &(impl Signer + ?Sized),
    origin: &str,
    destination: &str,
    method: &str,
    uri: &str,
    content: Option<&RawValue>,
) -> Result<String, XMatrixError> {
    let content = content.map(content_form).transpose()?;
    sign_canonical(key, origin, destination, method, uri, content.as_deref())
}

/// [`sign_request`] for a body given as the bytes that will be sent (the guard's rewritten
/// bodies): one pass of the canonical-JSON recogniser
/// ([`crate::federation::canonical::is_canonical_str`], which accepts only complete JSON
/// values) both validates the body and shows that it can be signed as it is; a body that is
/// valid JSON but not canonical is parsed and signed in its canonical form, anything else is
/// [`XMatrixError::Content`]. Saves the separate parse into a `RawValue` a caller would
/// otherwise need.
pub fn sign_request_body(
    key: &(impl Signer + ?Sized),
    origin: &str,
    destination: &str,
    method: &str,
    uri: &str,
    body: &[u8],
) -> Result<String, XMatrixError> {
    let text = std::str::from_utf8(body).map_err(|_| XMatrixError::Content)?;
    if crate::federation::canonical::is_canonical_str(text) {
        return sign_canonical(key, origin, destination, method, uri, Some(text));
    }
    let raw: &RawValue = serde_json::from_str(text).map_err(|_| XMatrixError::Content)?;
    sign_request(key, origin, destination, method, uri, Some(raw))
}

/// Signs with `content` already canonical.
fn sign_canonical(
    key: &(impl Signer + ?Sized),
    origin: &str,
    destination: &str,
    method: &str,
    uri: &str,
    content: Option<&str>,
) -> Result<String, XMatrixError> {
    let origin_name =
        OwnedServerName::try_from(origin).map_err(|_| XMatrixError::Invalid("origin"))?;
    let destination_name =
        OwnedServerName::try_from(destination).map_err(|_| XMatrixError::Invalid("destination"))?;
    let key_id = OwnedServerSigningKeyId::try_from(key.key_id())
        .map_err(|_| XMatrixError::Invalid("key"))?;
    let bytes = signing_bytes_canonical(method, uri, origin, destination, content)?;
    let header = XMatrix {
        origin: origin_name,
        destination: Some(destination_name),
        key: key_id,
        sig: key.sign(bytes.as_bytes()).to_vec(),
    };
    Ok(header.to_header_value())
}

/// Verifies a parsed header against the request, using the header's `destination` (fails with
/// [`XMatrixError::MissingDestination`] if the header has none; use [`verify_request_for`]).
pub fn verify_request(
    header: &XMatrix,
    method: &str,
    uri: &str,
    content: Option<&RawValue>,
    verify_key: &[u8; 32],
) -> Result<(), XMatrixError> {
    let destination = header
        .destination
        .as_ref()
        .ok_or(XMatrixError::MissingDestination)?;
    verify_request_for(
        header,
        destination.as_str(),
        method,
        uri,
        content,
        verify_key,
    )
}

/// Verifies a parsed header against a request received by `destination` (the server name the
/// request was addressed to). A header destination that differs is refused.
pub fn verify_request_for(
    header: &XMatrix,
    destination: &str,
    method: &str,
    uri: &str,
    content: Option<&RawValue>,
    verify_key: &[u8; 32],
) -> Result<(), XMatrixError> {
    if header
        .destination
        .as_ref()
        .is_some_and(|d| d.as_str() != destination)
    {
        return Err(XMatrixError::DestinationMismatch);
    }
    if header.key.algorithm() != SigningKeyAlgorithm::Ed25519 {
        return Err(XMatrixError::UnsupportedAlgorithm);
    }
    let bytes = signing_bytes(method, uri, header.origin.as_str(), destination, content)?;
    verify_canonical_json_bytes(
        &SigningKeyAlgorithm::Ed25519,
        verify_key,
        &header.sig,
        bytes.as_bytes(),
    )
    .map_err(|_| XMatrixError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;

    const SIG: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef";

    fn parse(s: &str) -> Result<XMatrix, XMatrixError> {
        XMatrix::parse(s)
    }

    #[test]
    fn parses_the_synapse_form() {
        let h = parse(&format!(
            r#"X-Matrix origin="origin.example",key="ed25519:a_AbCd",sig="{SIG}",destination="dest.example:8448""#
        ))
        .unwrap();
        assert_eq!(h.origin.as_str(), "origin.example");
        assert_eq!(
            h.destination.as_ref().unwrap().as_str(),
            "dest.example:8448"
        );
        assert_eq!(h.key.as_str(), "ed25519:a_AbCd");
        assert_eq!(STANDARD_NO_PAD.encode(&h.sig), SIG);
    }

    #[test]
    fn names_and_scheme_are_case_insensitive_any_order_whitespace_tolerant() {
        let h = parse(&format!(
            "  x-matrix \t SIG = \"{SIG}\" ,  Key=\"ed25519:k1\",\tDestination= d.example , ORIGIN=o.example:8448  "
        ))
        .unwrap();
        assert_eq!(h.origin.as_str(), "o.example:8448");
        assert_eq!(h.destination.unwrap().as_str(), "d.example");
        assert_eq!(h.key.as_str(), "ed25519:k1");
    }

    #[test]
    fn quoted_values_with_escapes_and_unquoted_values() {
        let h = parse(&format!(
            r#"X-Matrix origin="o\.example",key=ed25519:k1,sig={SIG},x-unknown="a,\"b\"""#
        ))
        .unwrap();
        assert_eq!(h.origin.as_str(), "o.example");
        assert_eq!(h.destination, None);
        // A padded signature is accepted too.
        let padded = STANDARD.encode(vec![7u8; 64]);
        assert!(padded.ends_with("=="));
        let h = parse(&format!(
            r#"X-Matrix origin=o,key="ed25519:k",sig="{padded}""#
        ))
        .unwrap();
        assert_eq!(h.sig, vec![7u8; 64]);
    }

    #[test]
    fn missing_parameters() {
        assert_eq!(
            parse(&format!(r#"X-Matrix key="ed25519:k",sig="{SIG}""#)),
            Err(XMatrixError::Missing("origin"))
        );
        assert_eq!(
            parse(&format!(r#"X-Matrix origin=o,sig="{SIG}""#)),
            Err(XMatrixError::Missing("key"))
        );
        assert_eq!(
            parse(r#"X-Matrix origin=o,key="ed25519:k""#),
            Err(XMatrixError::Missing("sig"))
        );
    }

    #[test]
    fn garbage_and_ambiguity_are_refused() {
        let ok = format!(r#"origin=o,key="ed25519:k",sig="{SIG}""#);
        assert_eq!(
            parse(&format!("Bearer {ok}")),
            Err(XMatrixError::NotXMatrix)
        );
        assert_eq!(
            parse(&format!("X-Matrixx {ok}")),
            Err(XMatrixError::NotXMatrix)
        );
        assert_eq!(parse(""), Err(XMatrixError::NotXMatrix));
        assert!(matches!(
            parse("X-Matrix"),
            Err(XMatrixError::Syntax { .. })
        ));
        assert!(matches!(
            parse(&format!("X-Matrix,{ok}")),
            Err(XMatrixError::NotXMatrix | XMatrixError::Syntax { .. })
        ));
        for bad in [
            format!("X-Matrix {ok},"),
            format!("X-Matrix ,{ok}"),
            format!("X-Matrix {ok},,x=1"),
            format!(r#"X-Matrix {ok},origin"#),
            format!(r#"X-Matrix {ok},destination="unterminated"#),
            format!(r#"X-Matrix {ok},destination="bad\"#),
            format!(r#"X-Matrix {ok} x=1"#),
            format!(r#"X-Matrix {ok}, X-Matrix {ok}"#),
            format!("X-Matrix {ok},destination=\"d\u{e4}\""),
            format!("X-Matrix {ok},x=a\"b"),
        ] {
            assert!(
                matches!(parse(&bad), Err(XMatrixError::Syntax { .. })),
                "{bad}: {:?}",
                parse(&bad)
            );
        }
        assert_eq!(
            parse(&format!(r#"X-Matrix {ok},Origin="evil.example""#)),
            Err(XMatrixError::Duplicate("origin"))
        );
        assert_eq!(
            parse(&format!(r#"X-Matrix {ok},destination=a,destination=b"#)),
            Err(XMatrixError::Duplicate("destination"))
        );
        assert_eq!(
            parse(&format!(
                r#"X-Matrix origin="a,origin=b",key="ed25519:k",sig="{SIG}""#
            )),
            Err(XMatrixError::Invalid("origin"))
        );
        assert_eq!(
            parse(&format!(r#"X-Matrix origin=o,key="k",sig="{SIG}""#)),
            Err(XMatrixError::Invalid("key"))
        );
        assert_eq!(
            parse(r#"X-Matrix origin=o,key="ed25519:k",sig="!!""#),
            Err(XMatrixError::Invalid("sig"))
        );
    }

    #[test]
    fn render_round_trips() {
        let h = parse(&format!(
            r#"x-matrix sig={SIG},key=ed25519:k1,origin=o.example,destination=d.example"#
        ))
        .unwrap();
        let s = h.to_header_value();
        assert_eq!(
            s,
            format!(
                r#"X-Matrix origin="o.example",destination="d.example",key="ed25519:k1",sig="{SIG}""#
            )
        );
        assert_eq!(parse(&s).unwrap(), h);
        // And ruma reads what we render.
        let r = ruma::api::federation::authentication::XMatrix::parse(&s).unwrap();
        assert_eq!(r.origin.as_str(), "o.example");
    }

    fn key() -> SigningKey {
        SigningKey::from_seed("a_test", [42u8; 32]).unwrap()
    }

    fn body(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn sign_verify_round_trip_and_tampering() {
        let k = key();
        let content = body(
            r#"{"pdus":[],"origin":"o.example","edus":[{"edu_type":"m.typing","content":{"x":"Grüße"}}],"origin_server_ts":1}"#,
        );
        let uri = "/_matrix/federation/v1/send/txn1";
        let header =
            sign_request(&k, "o.example", "d.example", "PUT", uri, Some(&content)).unwrap();
        let h = XMatrix::parse(&header).unwrap();
        assert_eq!(h.key.as_str(), "ed25519:a_test");
        let pk = k.public_key();
        assert_eq!(verify_request(&h, "PUT", uri, Some(&content), &pk), Ok(()));
        // Key order and whitespace in the body do not matter (canonical JSON).
        let reordered = body(
            r#"{ "origin_server_ts":1, "origin":"o.example", "pdus":[], "edus":[{"content":{"x":"Grüße"},"edu_type":"m.typing"}] }"#,
        );
        assert_eq!(
            verify_request(&h, "PUT", uri, Some(&reordered), &pk),
            Ok(())
        );
        // Tampering fails.
        assert_eq!(
            verify_request(
                &h,
                "PUT",
                "/_matrix/federation/v1/send/txn2",
                Some(&content),
                &pk
            ),
            Err(XMatrixError::BadSignature)
        );
        assert_eq!(
            verify_request(&h, "POST", uri, Some(&content), &pk),
            Err(XMatrixError::BadSignature)
        );
        let changed = body(
            r#"{"pdus":[],"origin":"o.example","edus":[{"edu_type":"m.typing","content":{"x":"Grüsse"}}],"origin_server_ts":1}"#,
        );
        assert_eq!(
            verify_request(&h, "PUT", uri, Some(&changed), &pk),
            Err(XMatrixError::BadSignature)
        );
        assert_eq!(
            verify_request(&h, "PUT", uri, None, &pk),
            Err(XMatrixError::BadSignature)
        );
        let other = SigningKey::from_seed("a_test", [43u8; 32]).unwrap();
        assert_eq!(
            verify_request(&h, "PUT", uri, Some(&content), &other.public_key()),
            Err(XMatrixError::BadSignature)
        );
        let mut forged = h.clone();
        forged.origin = "evil.example".try_into().unwrap();
        assert_eq!(
            verify_request(&forged, "PUT", uri, Some(&content), &pk),
            Err(XMatrixError::BadSignature)
        );
        // Destination handling.
        assert_eq!(
            verify_request_for(&h, "x.example", "PUT", uri, Some(&content), &pk),
            Err(XMatrixError::DestinationMismatch)
        );
        let mut old = h.clone();
        old.destination = None;
        assert_eq!(
            verify_request(&old, "PUT", uri, Some(&content), &pk),
            Err(XMatrixError::MissingDestination)
        );
        assert_eq!(
            verify_request_for(&old, "d.example", "PUT", uri, Some(&content), &pk),
            Ok(())
        );
    }

    #[test]
    fn get_requests_and_query_strings() {
        let k = key();
        let uri = "/_matrix/federation/v1/query/profile?user_id=%40u%3Ad.example&field=displayname";
        let header = sign_request(&k, "o.example", "d.example", "GET", uri, None).unwrap();
        let h = XMatrix::parse(&header).unwrap();
        assert_eq!(
            verify_request(&h, "GET", uri, None, &k.public_key()),
            Ok(())
        );
        let decoded = "/_matrix/federation/v1/query/profile?user_id=@u:d.example&field=displayname";
        assert_eq!(
            verify_request(&h, "GET", decoded, None, &k.public_key()),
            Err(XMatrixError::BadSignature)
        );
    }

    #[test]
    fn interoperates_with_ruma() {
        // ruma signs an http::Request; we verify it — and the other way round.
        use ruma::api::federation::authentication::{XMatrix as RumaXMatrix, XMatrixSigningInput};
        use ruma::signatures::Ed25519KeyPair;
        let k = key();
        let der = {
            let mut d = vec![
                0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
                0x04, 0x20,
            ];
            d.extend_from_slice(&[42u8; 32]);
            d
        };
        let pair = Ed25519KeyPair::from_der(&der, "a_test".into()).unwrap();
        let body_s = r#"{"b":[1,2],"a":"ä"}"#;
        let req = http::Request::builder()
            .method("POST")
            .uri("https://d.example/_matrix/federation/v1/user/keys/query?x=1")
            .body(body_s.as_bytes().to_vec())
            .unwrap();
        let input = XMatrixSigningInput::new(
            "o.example".try_into().unwrap(),
            "d.example".try_into().unwrap(),
            &pair,
        );
        let theirs = RumaXMatrix::sign_http_request(&req, input).unwrap();
        let ours = XMatrix::parse(&theirs.to_string()).unwrap();
        let content = body(body_s);
        assert_eq!(
            verify_request(
                &ours,
                "POST",
                "/_matrix/federation/v1/user/keys/query?x=1",
                Some(&content),
                &k.public_key()
            ),
            Ok(())
        );
        let header = sign_request(
            &k,
            "o.example",
            "d.example",
            "POST",
            "/_matrix/federation/v1/user/keys/query?x=1",
            Some(&content),
        )
        .unwrap();
        let parsed = RumaXMatrix::parse(&header).unwrap();
        let mut keys = std::collections::BTreeMap::new();
        let mut set = std::collections::BTreeMap::new();
        set.insert(
            k.key_id(),
            ruma::serde::Base64::new(k.public_key().to_vec()),
        );
        keys.insert("o.example".to_owned(), set);
        parsed
            .verify_http_request(&req, "d.example".try_into().unwrap(), &keys)
            .unwrap();
    }

    #[test]
    fn bodies_with_floats_are_signed_and_verified_in_synapses_form() {
        let k = key();
        // Synapse signs `encode_canonical_json` of the parsed body: floats in Python's `repr`,
        // integers of any size as they are.
        let float = body(r#"{ "b": 1E2, "a": 1.5, "c": 18446744073709551616 }"#);
        let header = sign_request(&k, "o.example", "d.example", "PUT", "/x", Some(&float)).unwrap();
        let h = XMatrix::parse(&header).unwrap();
        let signed = br#"{"content":{"a":1.5,"b":100.0,"c":18446744073709551616},"destination":"d.example","method":"PUT","origin":"o.example","uri":"/x"}"#;
        assert!(verify_canonical_json_bytes(
            &SigningKeyAlgorithm::Ed25519,
            &k.public_key(),
            &h.sig,
            signed
        )
        .is_ok());
        assert_eq!(
            verify_request(&h, "PUT", "/x", Some(&float), &k.public_key()),
            Ok(())
        );
        let changed = body(r#"{"b":100.5,"a":1.5,"c":18446744073709551616}"#);
        assert_eq!(
            verify_request(&h, "PUT", "/x", Some(&changed), &k.public_key()),
            Err(XMatrixError::BadSignature)
        );
    }

    #[test]
    fn non_canonical_content_is_an_error_not_a_panic() {
        let k = key();
        assert_eq!(
            sign_request(&k, "bad origin", "d.example", "PUT", "/x", None),
            Err(XMatrixError::Invalid("origin"))
        );
    }

    #[test]
    fn sign_request_body_equals_sign_request_and_refuses_what_it_cannot_sign() {
        let k = key();
        let uri = "/_matrix/federation/v1/send/1";
        // Canonical (fast path), non-canonical but valid (slow path): the same signature as
        // sign_request over the parsed body, and it verifies.
        for text in [
            r#"{"edus":[],"origin":"o.example","origin_server_ts":1,"pdus":[{"a":"Grüße \"x\" \u0001"}]}"#,
            r#"{ "pdus" : [ {"b":1,"a":"\u00e9"} ], "origin":"o.example" }"#,
            r#"{"pdus":[{"a":1.5,"b":-0}],"origin":"o.example"}"#,
        ] {
            let via_bytes =
                sign_request_body(&k, "o.example", "d.example", "PUT", uri, text.as_bytes())
                    .unwrap();
            let raw = body(text);
            assert_eq!(
                via_bytes,
                sign_request(&k, "o.example", "d.example", "PUT", uri, Some(&raw)).unwrap(),
                "{text}"
            );
            let h = XMatrix::parse(&via_bytes).unwrap();
            assert_eq!(
                verify_request(&h, "PUT", uri, Some(&raw), &k.public_key()),
                Ok(())
            );
        }
        // Not JSON (truncated, trailing garbage, two values, invalid UTF-8).
        for bad in [
            &br#"{"a":1"#[..],
            br#"{"a":1}x"#,
            br#"{"a":1} {"b":2}"#,
            b"{\"a\":\"\xff\"}",
            b"",
        ] {
            assert_eq!(
                sign_request_body(&k, "o.example", "d.example", "PUT", uri, bad),
                Err(XMatrixError::Content),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn signing_bytes_equal_rumas_canonical_form_of_the_whole_object() {
        for body in [
            r#"{"pdus":[],"origin":"a.example","edus":[{"edu_type":"m.typing","content":{"typing":true}}]}"#,
            r#"{ "b" : 1, "a" : "Gr\u00fc\u00dfe \ud83d\ude00", "c": [1, {"z":null,"y":false}] }"#,
            r#"{"a":"Grüße","b":1}"#,
        ] {
            let raw: Box<RawValue> = serde_json::from_str(body).unwrap();
            let ours = signing_bytes(
                "PUT",
                "/_matrix/federation/v1/send/1?x=%24",
                "o.example",
                "d.example:8448",
                Some(&raw),
            )
            .unwrap();
            let mut obj = CanonicalJsonObject::new();
            obj.insert("method".into(), CanonicalJsonValue::String("PUT".into()));
            obj.insert(
                "uri".into(),
                CanonicalJsonValue::String("/_matrix/federation/v1/send/1?x=%24".into()),
            );
            obj.insert(
                "origin".into(),
                CanonicalJsonValue::String("o.example".into()),
            );
            obj.insert(
                "destination".into(),
                CanonicalJsonValue::String("d.example:8448".into()),
            );
            obj.insert("content".into(), serde_json::from_str(body).unwrap());
            assert_eq!(
                ours,
                to_canonical_json_string_for_signing(&obj).unwrap(),
                "{body}"
            );
        }
    }
}
