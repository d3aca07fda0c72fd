//! The `multipart/mixed` answer of the federation media endpoints
//! (`GET /_matrix/federation/v1/media/download/{mediaId}` and `…/thumbnail/{mediaId}`), read
//! strictly, and built for the answer the guard gives after following a `Location`.
//!
//! The answer has exactly two parts: the first is `Content-Type: application/json` with a JSON
//! object (the media metadata, `{}` today); the second is either the file (its own
//! `Content-Type`, optionally `Content-Disposition`) or an empty part with a `Location` header
//! naming an absolute `https`/`http` URL where the file can be fetched.
//!
//! # The accepted family
//!
//! Synapse (`synapse/media/media_storage.py`, `MultipartFileConsumer`) writes, with a boundary
//! of 32 lower-case hex digits (`uuid4().hex`) and `Content-Type: multipart/mixed;
//! boundary=<hex>`:
//!
//! ```text
//! CRLF --B CRLF
//! Content-Type: application/json CRLF
//! CRLF {json}
//! CRLF --B CRLF
//! Content-Type: <type> CRLF
//! Content-Disposition: <inline|attachment>[; filename=…] CRLF
//! CRLF <file bytes>
//! CRLF --B-- CRLF
//! ```
//!
//! Go's `mime/multipart` writer (Dendrite) writes the same without the leading CRLF. Ruma's
//! writer (`ruma-federation-api`, used by the conduwuit family) writes lower-case header
//! names, a 30-character alphanumeric boundary and ends the body with `CRLF --B`, without the
//! closing `--`. [`parse`] accepts exactly this family:
//!
//! * the header value is `multipart/mixed` (case-insensitive) with one `boundary` parameter and
//!   no other; the boundary is 1–70 characters of RFC 2046 `bchars` (not ending in a space),
//!   as a token or a quoted string;
//! * before the first delimiter only CRLF pairs; no transport padding after a delimiter;
//! * every line ending is CRLF; a bare CR or LF in a part's header block is refused;
//! * header names are case-insensitive tokens, no folded lines, values of visible ASCII,
//!   spaces and tabs, none empty, none repeated;
//! * the first part has only `Content-Type: application/json` (optionally `; charset=utf-8`);
//!   its body is a JSON object that passes the strict validator
//!   ([`crate::federation::json::validate_with`]: no duplicate keys, bounded depth) and is at
//!   most [`MAX_METADATA_BYTES`];
//! * the second part has either `Location` alone, with an empty body, or bytes with
//!   `Content-Type` and `Content-Disposition` (both optional) and no other header;
//! * a part ends at the first `CRLF--boundary` after it starts (the boundary cannot occur
//!   inside a part); after the second part comes the close delimiter, and after that only
//!   whitespace (the epilogue) — or, as ruma writes it, the end of the body right after the
//!   delimiter.
//!
//! Anything else is a [`MultipartError`]; its messages name the rule broken, never bytes of
//! the answer.
use memchr::memmem;

use crate::federation::json::{validate_with, JsonError, JsonLimits, TopLevel};

/// Longest metadata part accepted (bytes).
pub const MAX_METADATA_BYTES: usize = 64 * 1024;
/// Longest header block of one part accepted (bytes).
pub const MAX_PART_HEADER_BYTES: usize = 8 * 1024;
/// Longest boundary (RFC 2046).
pub const MAX_BOUNDARY_LEN: usize = 70;

/// Why a media answer is not the strict form. Messages carry no bytes of the answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    /// The `Content-Type` header is not `multipart/mixed; boundary=…`.
    #[error("media answer: content type: {0}")]
    ContentType(&'static str),
    /// The boundary parameter is missing or not an RFC 2046 boundary.
    #[error("media answer: boundary: {0}")]
    Boundary(&'static str),
    /// Delimiters, preamble or epilogue are not where they must be.
    #[error("media answer: framing: {0}")]
    Framing(&'static str),
    /// Not exactly two parts.
    #[error("media answer: {0}")]
    PartCount(&'static str),
    /// A part's headers are malformed or not the allowed ones.
    #[error("media answer: part header: {0}")]
    Header(&'static str),
    /// The metadata part is not a JSON object.
    #[error("media answer: metadata: {0}")]
    Metadata(JsonError),
    /// The metadata part is larger than [`MAX_METADATA_BYTES`].
    #[error("media answer: metadata larger than {MAX_METADATA_BYTES} bytes")]
    MetadataTooLarge,
    /// The `Location` part is malformed (not an absolute http(s) URL, or with a body).
    #[error("media answer: location: {0}")]
    Location(&'static str),
}

/// A parsed media answer, borrowing from the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaAnswer<'a> {
    /// The JSON object of the first part, as received.
    pub metadata: &'a [u8],
    pub content: Content<'a>,
}

/// The second part of a media answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content<'a> {
    /// The file itself.
    Bytes {
        /// The part's `Content-Type` value (as received, trimmed).
        content_type: Option<String>,
        /// The part's `Content-Disposition` value (as received, trimmed).
        disposition: Option<String>,
        bytes: &'a [u8],
    },
    /// The file is at this absolute `https`/`http` URL.
    Location(String),
}

/// Parse a media answer whose `Content-Type` header value is `content_type`.
pub fn parse<'a>(content_type: &str, body: &'a [u8]) -> Result<MediaAnswer<'a>, MultipartError> {
    let boundary = boundary_of(content_type)?;
    // "CRLF--boundary": the delimiter that ends a part.
    let mut delim = Vec::with_capacity(boundary.len() + 4);
    delim.extend_from_slice(b"\r\n--");
    delim.extend_from_slice(boundary.as_bytes());
    let dash_boundary = &delim[2..];

    // Preamble: CRLF pairs only.
    let mut pos = 0;
    while body[pos..].starts_with(b"\r\n") {
        pos += 2;
    }
    if !body[pos..].starts_with(dash_boundary) {
        return Err(MultipartError::Framing(
            "the body does not start with the boundary delimiter",
        ));
    }
    pos += dash_boundary.len();
    let finder = memmem::Finder::new(&delim);

    let mut parts: Vec<(&'a [u8], &'a [u8])> = Vec::with_capacity(2);
    loop {
        // After a delimiter: CRLF (a part follows) or "--" (the close delimiter). Ruma's
        // writer ends the body right after the delimiter that follows the second part.
        if body[pos..].starts_with(b"--") {
            pos += 2;
            break;
        }
        if pos == body.len() && parts.len() == 2 {
            break;
        }
        if !body[pos..].starts_with(b"\r\n") {
            return Err(MultipartError::Framing(
                "a delimiter is not followed by CRLF or `--`",
            ));
        }
        pos += 2;
        if parts.len() == 2 {
            return Err(MultipartError::PartCount("more than two parts"));
        }
        let end = finder
            .find(&body[pos..])
            .map(|i| pos + i)
            .ok_or(MultipartError::Framing("no close delimiter"))?;
        let part = &body[pos..end];
        parts.push(split_part(part)?);
        pos = end + delim.len();
    }
    if !body[pos..]
        .iter()
        .all(|b| matches!(b, b'\r' | b'\n' | b' ' | b'\t'))
    {
        return Err(MultipartError::Framing(
            "bytes other than whitespace after the close delimiter",
        ));
    }
    let [(meta_headers, metadata), (file_headers, file_body)] = match parts.as_slice() {
        [a, b] => [*a, *b],
        [] => return Err(MultipartError::PartCount("no parts")),
        _ => return Err(MultipartError::PartCount("one part, not two")),
    };

    // First part: application/json, a JSON object.
    let headers = headers_of(meta_headers)?;
    let mut json_type = None;
    for (name, value) in &headers {
        if name.eq_ignore_ascii_case("content-type") {
            json_type = Some(*value);
        } else {
            return Err(MultipartError::Header(
                "the metadata part has a header other than Content-Type",
            ));
        }
    }
    match json_type {
        Some(v) if is_json_type(v) => {}
        Some(_) => {
            return Err(MultipartError::Header(
                "the first part is not application/json",
            ))
        }
        None => return Err(MultipartError::Header("the first part has no Content-Type")),
    }
    if metadata.len() > MAX_METADATA_BYTES {
        return Err(MultipartError::MetadataTooLarge);
    }
    validate_with(metadata, JsonLimits::default(), TopLevel::Object)
        .map_err(MultipartError::Metadata)?;

    // Second part: the file or a Location.
    let headers = headers_of(file_headers)?;
    let mut content_type = None;
    let mut disposition = None;
    let mut location = None;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("content-disposition") {
            disposition = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("location") {
            location = Some(value);
        } else {
            return Err(MultipartError::Header(
                "the file part has a header other than Content-Type, Content-Disposition, Location",
            ));
        }
    }
    let content = match location {
        Some(url) => {
            if content_type.is_some() || disposition.is_some() {
                return Err(MultipartError::Location(
                    "a Location part with other headers",
                ));
            }
            if !file_body.is_empty() {
                return Err(MultipartError::Location("a Location part with a body"));
            }
            check_location(url)?;
            Content::Location(url.to_owned())
        }
        None => Content::Bytes {
            content_type,
            disposition,
            bytes: file_body,
        },
    };
    Ok(MediaAnswer { metadata, content })
}

/// Build the inline media answer: returns the `Content-Type` header value (with a fresh
/// random boundary that occurs in neither `metadata` nor `bytes`) and the body, in Synapse's
/// layout (see the module docs). `content_type` and `disposition` are cut to visible ASCII,
/// spaces and tabs (other characters are dropped) and trimmed; an empty `content_type` or
/// `disposition` is left out. `metadata` must be a JSON object (the caller's; it is not
/// checked here).
pub fn build(
    metadata: &[u8],
    content_type: &str,
    disposition: Option<&str>,
    bytes: &[u8],
) -> (String, Vec<u8>) {
    let boundary = loop {
        let b: String = rand::random::<[u8; 16]>()
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect();
        let dash_boundary = format!("--{b}");
        let clash = |hay: &[u8]| memmem::find(hay, dash_boundary.as_bytes()).is_some();
        if !clash(metadata) && !clash(bytes) {
            break b;
        }
    };
    let content_type = header_value(content_type);
    let disposition = disposition.map(header_value).filter(|d| !d.is_empty());
    let mut out = Vec::with_capacity(metadata.len() + bytes.len() + 256);
    out.extend_from_slice(b"\r\n--");
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(b"\r\nContent-Type: application/json\r\n\r\n");
    out.extend_from_slice(metadata);
    out.extend_from_slice(b"\r\n--");
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(b"\r\n");
    if !content_type.is_empty() {
        out.extend_from_slice(b"Content-Type: ");
        out.extend_from_slice(content_type.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(d) = disposition {
        out.extend_from_slice(b"Content-Disposition: ");
        out.extend_from_slice(d.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n--");
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(b"--\r\n");
    (format!("multipart/mixed; boundary={boundary}"), out)
}

/// A header value as [`build`] writes it: visible ASCII, spaces and tabs, trimmed.
fn header_value(v: &str) -> String {
    v.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ' || *c == '\t')
        .collect::<String>()
        .trim_matches([' ', '\t'])
        .to_owned()
}

/// The boundary of a `multipart/mixed` content type value.
fn boundary_of(content_type: &str) -> Result<String, MultipartError> {
    let mut params = split_params(content_type)?;
    let media_type = params.next().unwrap_or("").trim_matches([' ', '\t']);
    if !media_type.eq_ignore_ascii_case("multipart/mixed") {
        return Err(MultipartError::ContentType("not multipart/mixed"));
    }
    let mut boundary = None;
    for param in params {
        let param = param.trim_matches([' ', '\t']);
        let (name, value) = param
            .split_once('=')
            .ok_or(MultipartError::ContentType("a parameter without `=`"))?;
        if !name.eq_ignore_ascii_case("boundary") {
            return Err(MultipartError::ContentType(
                "a parameter other than boundary",
            ));
        }
        if boundary.is_some() {
            return Err(MultipartError::Boundary("given twice"));
        }
        boundary = Some(boundary_value(value)?);
    }
    boundary.ok_or(MultipartError::Boundary("missing"))
}

/// Split a header value at `;` outside quoted strings.
fn split_params(v: &str) -> Result<impl Iterator<Item = &str>, MultipartError> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in v.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => {
                out.push(&v[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted {
        return Err(MultipartError::ContentType("unterminated quoted string"));
    }
    out.push(&v[start..]);
    Ok(out.into_iter())
}

fn is_bchar_nospace(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'\'' | b'(' | b')' | b'+' | b'_' | b',' | b'-' | b'.' | b'/' | b':' | b'=' | b'?'
        )
}

/// RFC 2045 token characters that are also `bchars`.
fn is_token_bchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'\'' | b'+' | b'_' | b'-' | b'.')
}

fn boundary_value(v: &str) -> Result<String, MultipartError> {
    let inner = match v.strip_prefix('"') {
        Some(rest) => {
            let inner = rest
                .strip_suffix('"')
                .ok_or(MultipartError::Boundary("unterminated quoted string"))?;
            if !inner.bytes().all(|b| is_bchar_nospace(b) || b == b' ') {
                return Err(MultipartError::Boundary(
                    "a character outside RFC 2046 bchars",
                ));
            }
            inner
        }
        None => {
            if !v.bytes().all(is_token_bchar) {
                return Err(MultipartError::Boundary(
                    "an unquoted character outside the token bchars",
                ));
            }
            v
        }
    };
    if inner.is_empty() {
        return Err(MultipartError::Boundary("empty"));
    }
    if inner.len() > MAX_BOUNDARY_LEN {
        return Err(MultipartError::Boundary("longer than 70 characters"));
    }
    if inner.ends_with(' ') {
        return Err(MultipartError::Boundary("ends with a space"));
    }
    Ok(inner.to_owned())
}

/// Split a part into its header block (without the blank line) and its body.
fn split_part(part: &[u8]) -> Result<(&[u8], &[u8]), MultipartError> {
    if let Some(body) = part.strip_prefix(b"\r\n") {
        return Ok((&[], body));
    }
    let end = memmem::find(part, b"\r\n\r\n")
        .ok_or(MultipartError::Header("no blank line after the headers"))?;
    if end > MAX_PART_HEADER_BYTES {
        return Err(MultipartError::Header("header block too large"));
    }
    Ok((&part[..end], &part[end + 4..]))
}

/// The `name: value` lines of a header block, checked.
fn headers_of(block: &[u8]) -> Result<Vec<(&str, &str)>, MultipartError> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    if block.is_empty() {
        return Ok(out);
    }
    let text = std::str::from_utf8(block).map_err(|_| MultipartError::Header("not ASCII"))?;
    for line in text.split("\r\n") {
        if line.bytes().any(|b| b == b'\r' || b == b'\n') {
            return Err(MultipartError::Header("a bare CR or LF"));
        }
        if line.starts_with([' ', '\t']) {
            return Err(MultipartError::Header("a folded header line"));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(MultipartError::Header("a line without `:`"))?;
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(MultipartError::Header("a header name that is not a token"));
        }
        if !value
            .bytes()
            .all(|b| b.is_ascii_graphic() || b == b' ' || b == b'\t')
        {
            return Err(MultipartError::Header(
                "a header value with control or non-ASCII characters",
            ));
        }
        let value = value.trim_matches([' ', '\t']);
        if value.is_empty() {
            return Err(MultipartError::Header("an empty header value"));
        }
        if out.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            return Err(MultipartError::Header("a header given twice"));
        }
        out.push((name, value));
    }
    Ok(out)
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// `application/json`, optionally with `charset=utf-8`.
fn is_json_type(v: &str) -> bool {
    let mut it = v.split(';').map(|p| p.trim_matches([' ', '\t']));
    if !it
        .next()
        .is_some_and(|t| t.eq_ignore_ascii_case("application/json"))
    {
        return false;
    }
    match (it.next(), it.next()) {
        (None, _) => true,
        (Some(p), None) => {
            let p = p.replace('"', "");
            p.eq_ignore_ascii_case("charset=utf-8")
        }
        _ => false,
    }
}

/// An absolute `https://` or `http://` URL with a host.
fn check_location(url: &str) -> Result<(), MultipartError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| MultipartError::Location("not a URL"))?;
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") || s.eq_ignore_ascii_case("http") => {}
        _ => return Err(MultipartError::Location("not an http or https URL")),
    }
    match uri.authority() {
        Some(a) if !a.host().is_empty() && !a.as_str().contains('@') => Ok(()),
        Some(_) => Err(MultipartError::Location("no host, or user information")),
        None => Err(MultipartError::Location("not absolute")),
    }
}

#[cfg(test)]
mod tests;
